from typing import Any

from pydantic import Field

from lmforge.errors import UserError
from lmforge.objectives.registry import ObjectiveParams


class ClassificationParams(ObjectiveParams):
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)

    def check_run(self, config: Any, where: str) -> None:
        """With several classification tasks (data.tasks) the label sets differ: smoothing over the
        padded classes of the shared logits is undefined."""
        if self.label_smoothing and config.data.tasks:
            raise UserError("label smoothing is not supported with several classification tasks",
                            where=f"{where}: objective.label_smoothing", hint="remove objective.label_smoothing")
