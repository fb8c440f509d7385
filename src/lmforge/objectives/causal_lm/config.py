from lmforge.objectives.registry import ObjectiveParams


class CausalLMParams(ObjectiveParams):
    """Next-token cross-entropy; which tokens count is set by data.train_on."""
