from pydantic import Field

from lmforge.methods.registry import MethodParams


class FreezeParams(MethodParams):
    """Feature extraction: the base is frozen; the head (and optionally the last layers) train."""

    last_layers: int = Field(default=0, ge=0, description="Transformer layers at the top that also train.")
    train_head: bool = Field(default=True, description="Train the task head (always for classification).")
