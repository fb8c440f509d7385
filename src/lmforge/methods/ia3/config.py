from typing import Literal

from pydantic import Field, model_validator

from lmforge.methods.registry import MethodParams


class Ia3Params(MethodParams):
    """(IA)^3 (Liu et al. 2022): trained per-channel scales on keys, values and the MLP's input."""

    target_modules: Literal["auto"] | list[str] = Field(
        default="auto", description="'auto' (peft's choice for known architectures) or module-name suffixes."
    )
    feedforward_modules: list[str] | None = Field(
        default=None, description="Which target_modules are MLP layers (their input is scaled); needs target_modules."
    )

    @model_validator(mode="after")
    def _feedforward_within_targets(self):
        if self.feedforward_modules is not None:
            if self.target_modules == "auto":
                raise ValueError("feedforward_modules needs an explicit target_modules list")
            extra = sorted(set(self.feedforward_modules) - set(self.target_modules))
            if extra:
                raise ValueError(f"feedforward_modules {extra} are not in target_modules")
        return self
