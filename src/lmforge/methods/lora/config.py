from typing import Literal

from pydantic import Field

from lmforge.methods.registry import MethodParams


class LoraParams(MethodParams):
    r: int = Field(default=16, ge=1, description="Rank of the update.")
    alpha: float = Field(default=32, gt=0, description="Scale numerator: update is scaled by alpha/r (alpha/sqrt(r) with rslora).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description=(
        "Dropout on the LoRA input while training (inverted, per element; masks hashed from a seeded key in "
        "lmforge's fused layer, docs/performance.md)."))
    target_modules: Literal["all-linear"] | list[str] = Field(
        default="all-linear", description="'all-linear' or module-name suffixes, e.g. [q_proj, v_proj]."
    )
    use_dora: bool = Field(default=False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(default=False, description="Rank-stabilised scaling alpha/sqrt(r).")
    bias: Literal["none", "all", "lora_only"] = "none"
