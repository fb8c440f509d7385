from typing import Literal

from pydantic import Field

from lmforge.methods.registry import MethodParams


class AdapterParams(MethodParams):
    """Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020) inside every transformer block."""

    style: Literal["pfeiffer", "houlsby"] = Field(
        default="pfeiffer", description="pfeiffer: one adapter after the MLP; houlsby: after attention and after the MLP."
    )
    reduction_factor: int = Field(default=16, ge=1, description="Bottleneck width = hidden size / reduction_factor.")
    non_linearity: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    attention_output: str | None = Field(
        default=None, description="Name (inside a block) of the attention output projection; default: found automatically."
    )
    mlp_output: str | None = Field(
        default=None, description="Name (inside a block) of the MLP output projection; default: found automatically."
    )
