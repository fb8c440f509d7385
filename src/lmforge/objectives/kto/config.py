from pydantic import Field

from lmforge.objectives.registry import ObjectiveParams


class KTOParams(ObjectiveParams):
    """Kahneman-Tversky optimisation on unpaired good / bad answers against a reference."""

    beta: float = Field(default=0.1, gt=0, description="Strength of the pull toward the reference.")
    desirable_weight: float = Field(default=1.0, gt=0, description="Loss weight of good answers (raise when they are rarer).")
    undesirable_weight: float = Field(default=1.0, gt=0, description="Loss weight of bad answers.")
    precompute_reference: bool = Field(default=True, description="Compute each example's reference log-prob once and reuse it.")
