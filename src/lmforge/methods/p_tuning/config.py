from typing import Literal

from pydantic import Field

from lmforge.methods.registry import MethodParams


class PTuningParams(MethodParams):
    """P-tuning (Liu et al. 2021): virtual-token embeddings produced by a small trained prompt encoder."""

    num_virtual_tokens: int = Field(default=20, ge=1, le=512, description="Virtual tokens prepended to each input.")
    encoder: Literal["mlp", "lstm"] = Field(default="mlp", description="Prompt encoder type.")
    encoder_hidden_size: int = Field(default=128, ge=1, description="Hidden width of the prompt encoder.")
    encoder_num_layers: int = Field(default=2, ge=1, le=8, description="Layers of the prompt encoder (lstm).")
    encoder_dropout: float = Field(default=0.0, ge=0, lt=1)
