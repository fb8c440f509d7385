from typing import Literal

from pydantic import Field

from lmforge.objectives.registry import ObjectiveParams


class DPOParams(ObjectiveParams):
    """Direct preference optimisation against a reference (the adapter-disabled or frozen base)."""

    beta: float = Field(default=0.1, gt=0, description="Strength of the pull toward the reference (KL weight).")
    loss: Literal["sigmoid", "ipo", "hinge"] = Field(default="sigmoid", description="DPO (sigmoid), IPO or hinge (SLiC) loss.")
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5, description="Assumed share of flipped labels (conservative DPO, sigmoid only).")
    precompute_reference: bool = Field(default=True, description="Compute each example's reference log-probs once and reuse them.")


class SimPOParams(ObjectiveParams):
    """Reference-free: length-normalised log-prob margin with a target gap."""

    beta: float = Field(default=2.0, gt=0, description="Scale of the length-normalised reward.")
    gamma: float = Field(default=1.0, ge=0, description="Target reward margin between chosen and rejected.")


class ORPOParams(ObjectiveParams):
    """Reference-free: SFT loss on the chosen answer plus an odds-ratio preference term."""

    beta: float = Field(default=0.1, gt=0, description="Weight of the odds-ratio term (lambda in the paper).")
