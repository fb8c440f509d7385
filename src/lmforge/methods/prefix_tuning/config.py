from typing import Literal

from pydantic import Field, model_validator

from lmforge.methods.registry import MethodParams


class PrefixTuningParams(MethodParams):
    """Prefix tuning (Li & Liang 2021): trained key/value prefixes in every attention layer."""

    num_virtual_tokens: int = Field(default=20, ge=1, le=512, description="Prefix length per attention layer.")
    projection: bool = Field(default=False, description="Reparameterise the prefix through a 2-layer MLP while training.")
    projection_hidden_size: int = Field(default=128, ge=1, description="Hidden width of that MLP.")
    init: Literal["vocab", "random"] = Field(
        default="vocab",
        description="vocab: the keys/values the frozen model computes for num_virtual_tokens random vocabulary "
        "tokens (an untrained prefix then reads like real text); random: peft's N(0, 1) (used with projection).")

    @model_validator(mode="after")
    def _init_needs_a_plain_prefix(self):
        if self.projection and self.init == "vocab" and "init" in self.model_fields_set:
            raise ValueError("init: vocab sets the prefix itself, which projection: true replaces by an MLP's "
                             "output (set init: random, or projection: false)")
        return self

    @property
    def init_from_vocab(self) -> bool:
        """Whether the prefix starts from real key/values (init vocab, without a projection MLP)."""
        return self.init == "vocab" and not self.projection
