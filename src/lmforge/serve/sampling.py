"""Next-token choice per row: greedy at temperature 0, else temperature + nucleus (top_p) sampling."""

from __future__ import annotations

import torch


def next_tokens(logits: torch.Tensor, temperatures: list[float], top_ps: list[float],
                generators: list[torch.Generator | None]) -> torch.Tensor:
    """logits [batch, vocab] -> token ids [batch] (long). One temperature/top_p/generator per row."""
    out = torch.empty(logits.shape[0], dtype=torch.long)
    for i, (t, p, gen) in enumerate(zip(temperatures, top_ps, generators)):
        row = logits[i].float()
        if t <= 0.0:
            out[i] = int(row.argmax())
            continue
        # Subtract the max first, and keep t a normal float32 (1e-300 would round to 0): a tiny
        # temperature then gives 0 for the best token and -inf for the rest, never 0/0 = nan.
        probs = torch.softmax((row - row.max()) / max(t, 1e-30), dim=-1)
        if p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < p  # smallest set whose mass reaches p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        out[i] = int(torch.multinomial(probs / probs.sum(), 1, generator=gen))
    return out
