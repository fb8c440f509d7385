"""Next-token choice per row: greedy at temperature 0, else temperature + nucleus (top_p) sampling,
after an optional repetition penalty on the tokens the row has already seen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Sampling:
    """How one row picks its next token: ``temperature <= 0`` is greedy (argmax); otherwise the
    softmax of ``logits / temperature`` restricted to the smallest set of tokens whose mass reaches
    ``top_p`` (nucleus sampling, Holtzman et al. 2020), renormalised, sampled once.

    ``repetition_penalty`` > 1 makes every token already in the row (prompt and answer so far) less
    likely, as transformers' ``repetition_penalty`` does (Keskar et al. 2019): its logit is divided by
    the penalty when positive, multiplied when negative. 1 = off."""

    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


GREEDY = Sampling()


def penalize_repeats(logits: torch.Tensor, samplings: Sequence[Sampling], seen: Sequence[Sequence[int]]) -> torch.Tensor:
    """``logits`` [batch, vocab] with each row's repetition penalty applied to the ids in ``seen[row]``
    (a new tensor when any row has a penalty; the same one otherwise)."""
    rows = [i for i, s in enumerate(samplings) if s.repetition_penalty != 1.0 and len(seen[i])]
    if not rows:
        return logits
    logits = logits.clone()
    for i in rows:
        ids = torch.as_tensor(sorted(set(seen[i])), dtype=torch.long, device=logits.device)
        values, penalty = logits[i, ids], samplings[i].repetition_penalty
        logits[i, ids] = torch.where(values > 0, values / penalty, values * penalty)
    return logits


def next_tokens(logits: torch.Tensor, samplings: Sequence[Sampling],
                generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
    """logits [batch, vocab] -> token ids [batch] (long, on the logits' device); repetition penalties
    are applied first by the caller (:func:`penalize_repeats`), which knows each row's tokens.

    One :class:`Sampling` and one optional ``torch.Generator`` per row (None: torch's global RNG,
    so a seeded run repeats). Greedy rows never touch an RNG. Rows that sample without a generator
    draw together in one ``torch.multinomial`` call.
    """
    out = logits.argmax(dim=-1)
    gens = list(generators) if generators is not None else [None] * len(samplings)
    sampled = [i for i, s in enumerate(samplings) if not s.greedy]
    if not sampled:
        return out
    shared = [i for i in sampled if gens[i] is None]
    if shared:
        probs = torch.stack([_nucleus(logits[i].float(), samplings[i]) for i in shared])
        out[shared] = torch.multinomial(probs, 1).squeeze(1).to(out.dtype)
    for i in sampled:
        if gens[i] is not None:
            probs = _nucleus(logits[i].float(), samplings[i])
            out[i] = torch.multinomial(probs.cpu(), 1, generator=gens[i]).to(out.device).squeeze()
    return out


def _nucleus(row: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Probabilities of one row after temperature and top_p (sums to 1)."""
    # Subtract the max first, and keep t a normal float32 (1e-300 would round to 0): a tiny
    # temperature then gives 0 for the best token and -inf for the rest, never 0/0 = nan.
    probs = torch.softmax((row - row.max()) / max(sampling.temperature, 1e-30), dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < sampling.top_p  # smallest set whose mass reaches p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return probs / probs.sum()
