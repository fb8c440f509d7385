import re

from pydantic import Field, model_validator

from lmforge.objectives.registry import ObjectiveParams

FUNCTION_REF = re.compile(r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$")


class GRPOParams(ObjectiveParams):
    """Online RL: sample a group of answers per prompt, reward them, push toward the better ones."""

    reward: str | None = Field(
        default=None,
        description="Reward function 'module:function' or 'path/to/file.py:function', called as f(prompt, completion, reference) -> float.",
    )
    reward_model: str | None = Field(default=None, description="Folder of a trained reward model (e.g. runs/<name>/export/merged).")
    group_size: int = Field(default=4, ge=2, description="Completions sampled per prompt (k).")
    max_new_tokens: int = Field(default=64, ge=1, description="Tokens per sampled completion.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    beta: float = Field(default=0.04, ge=0, description="Weight of the KL penalty to the reference (0 = none, no reference pass).")
    clip: float = Field(default=0.2, gt=0, lt=1, description="Policy-ratio clipping range epsilon.")

    @model_validator(mode="after")
    def _one_reward(self) -> "GRPOParams":
        if (self.reward is None) == (self.reward_model is None):
            raise ValueError("set exactly one of reward (a Python function) or reward_model (a folder)")
        if self.reward is not None and not FUNCTION_REF.match(self.reward):
            raise ValueError(f"reward '{self.reward}' must look like 'module:function' or 'file.py:function'")
        return self
