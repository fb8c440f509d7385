from pydantic import Field

from lmforge.objectives.registry import ObjectiveParams


class ClassificationParams(ObjectiveParams):
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
