from typing import Literal

from pydantic import Field, model_validator

from lmforge.methods.registry import MethodParams


class PromptTuningParams(MethodParams):
    """Soft prompt tuning (Lester et al. 2021): trained virtual-token embeddings before the input."""

    num_virtual_tokens: int = Field(default=20, ge=1, le=512, description="Trained virtual tokens before each input.")
    init: Literal["vocab", "random", "text"] = Field(
        default="vocab", description="vocab: embeddings of random vocabulary tokens; text: of init_text; random."
    )
    init_text: str = Field(default="", description="With init: text, e.g. 'Classify the sentiment of this review:'.")

    @model_validator(mode="after")
    def _text_needs_text(self):
        if self.init == "text" and not self.init_text.strip():
            raise ValueError("init: text needs init_text (the words whose embeddings start the prompt)")
        if self.init_text and self.init != "text":
            raise ValueError("init_text is only used with init: text")
        return self
