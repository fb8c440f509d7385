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
        probs = torch.softmax(row / t, dim=-1)
        if p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < p  # smallest set whose mass reaches p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        out[i] = int(torch.multinomial(probs / probs.sum(), 1, generator=gen))
    return out
