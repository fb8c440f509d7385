from pydantic import Field

from lmforge.methods.registry import MethodParams


class PrefixTuningParams(MethodParams):
    """Prefix tuning (Li & Liang 2021): trained key/value prefixes in every attention layer."""

    num_virtual_tokens: int = Field(default=20, ge=1, le=512, description="Prefix length per attention layer.")
    projection: bool = Field(default=False, description="Reparameterise the prefix through a 2-layer MLP while training.")
    projection_hidden_size: int = Field(default=128, ge=1, description="Hidden width of that MLP.")
