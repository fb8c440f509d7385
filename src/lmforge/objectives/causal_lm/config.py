from pydantic import Field

from lmforge.objectives.registry import ObjectiveParams


class CausalLMParams(ObjectiveParams):
    """Next-token cross-entropy; which tokens count is set by data.train_on."""

    chunk_size: int = Field(
        default=1024, ge=16,
        description="Labelled positions per output-projection chunk: the full logits tensor is never materialised.",
    )
