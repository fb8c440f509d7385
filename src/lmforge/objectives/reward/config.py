from pydantic import Field

from lmforge.objectives.registry import ObjectiveParams


class RewardParams(ObjectiveParams):
    """Bradley-Terry reward model: a scalar head scores whole conversations."""

    margin: float = Field(default=0.0, ge=0, description="Required score gap between chosen and rejected (0 = plain Bradley-Terry).")
    center_weight: float = Field(default=0.0, ge=0, description="Penalty on squared scores, keeps rewards centred near 0.")
