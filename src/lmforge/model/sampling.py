"""Next-token choice per row: greedy at temperature 0, else temperature + nucleus (top_p) sampling,
after the row's optional logit adjustments (:func:`adjust_logits`): a repetition penalty on the tokens it
has already seen, OpenAI's presence and frequency penalties on the tokens of its answer so far, and a
fixed bias per token id."""

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
    the penalty when positive, multiplied when negative. 1 = off.

    ``presence_penalty`` / ``frequency_penalty`` are OpenAI's: each token id that already occurs ``c`` > 0
    times in the row's answer so far (not its prompt, as vLLM counts) has ``presence_penalty + c x
    frequency_penalty`` subtracted from its logit; negative values make repeats likelier. 0 = off.
    ``logit_bias``: ``(token id, bias)`` pairs added to those ids' logits (OpenAI's ``logit_bias``: -100
    bans a token in practice, 100 forces it). All of these apply before temperature and top_p, in the
    order repetition penalty, presence/frequency, bias."""

    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def adjusts(self) -> bool:
        """True when the row's logits change before its choice (a penalty or bias is set)."""
        return (self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0
                or bool(self.logit_bias))


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


def adjust_logits(logits: torch.Tensor, samplings: Sequence[Sampling], prompts: Sequence[Sequence[int]],
                  answers: Sequence[Sequence[int]]) -> torch.Tensor:
    """``logits`` [batch, vocab] with each row's penalties and bias applied (see :class:`Sampling`): the
    repetition penalty over ``prompts[row] + answers[row]``, presence and frequency penalties over
    ``answers[row]``, then the bias. A new tensor when any row adjusts; the same one otherwise."""
    if not any(s.adjusts for s in samplings):
        return logits
    penalized = penalize_repeats(logits, samplings, [[*p, *a] for p, a in zip(prompts, answers)])
    rows = [i for i, s in enumerate(samplings)
            if (s.presence_penalty or s.frequency_penalty) and len(answers[i]) or s.logit_bias]
    if not rows:
        return penalized
    logits = penalized if penalized is not logits else logits.clone()  # never write into the caller's tensor
    for i in rows:
        sampling = samplings[i]
        if (sampling.presence_penalty or sampling.frequency_penalty) and len(answers[i]):
            ids, counts = torch.as_tensor(list(answers[i]), dtype=torch.long).unique(return_counts=True)
            penalty = sampling.presence_penalty + sampling.frequency_penalty * counts.to(logits.dtype)
            logits[i, ids.to(logits.device)] -= penalty.to(logits.device)
        if sampling.logit_bias:
            ids = torch.tensor([t for t, _ in sampling.logit_bias], dtype=torch.long, device=logits.device)
            logits[i, ids] += torch.tensor([b for _, b in sampling.logit_bias], dtype=logits.dtype, device=logits.device)
    return logits


def next_tokens(logits: torch.Tensor, samplings: Sequence[Sampling],
                generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
    """logits [batch, vocab] -> token ids [batch] (long, on the logits' device); penalties and biases
    are applied first by the caller (:func:`adjust_logits`), which knows each row's tokens.

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
