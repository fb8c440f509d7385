"""Machinery shared by the preference objectives (dpo / simpo / orpo, kto, grpo): completion
log-probs (:mod:`.logprobs`) and reference log-probs (:mod:`.reference`). Not an objective itself:
nothing is registered here."""

from lmforge.objectives.preference.logprobs import sequence_logps, token_logps
from lmforge.objectives.preference.reference import MakeReference, Reference

__all__ = ["MakeReference", "Reference", "sequence_logps", "token_logps"]
