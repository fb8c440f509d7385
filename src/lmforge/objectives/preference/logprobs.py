"""Log-probabilities of completion tokens: the one place preference objectives (dpo, kto, grpo) read them from.

For a batch of right-padded rows with un-shifted ``labels`` (-100 = not a completion token),
the log-prob of row b is sum over t with ``labels[b, t+1] != -100`` of
``log softmax(logits[b, t])[labels[b, t+1]]``: prompt, template scaffolding and pad positions
never count. As in :mod:`lmforge.objectives.causal_lm.chunked`, the decoder body runs alone and
only the selected positions are projected to the vocabulary (in checkpointed chunks), so no
``tokens x vocab`` tensor is ever materialised; models that cannot be split fall back to full logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lmforge.model.parts import find_body_and_head

IGNORE = -100


def token_logps(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                labels: torch.Tensor, chunk_size: int = 1024, position_ids: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position log-probs of the next label token.

    Args:
        input_ids, attention_mask, labels: (B, T); labels un-shifted, -100 = not scored.
        position_ids: (B, T) for left-padded rows (default: the model's own 0..T-1).
    Returns:
        ``(logps, mask)``, both (B, T-1): ``logps[b, t]`` = log p(labels[b, t+1] | ids[b, :t+1])
        in fp32 (0 where not scored, differentiable), ``mask`` = ``labels[:, 1:] != -100``.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:
        inputs["position_ids"] = position_ids
    parts = find_body_and_head(model)
    if parts is None:
        logits = model(**inputs).logits
        logits = logits[:, -labels.shape[1]:][:, :-1].float()  # prompt-learning wrappers prepend positions
        flat = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                ignore_index=IGNORE, reduction="none")
        return flat.view(targets.shape) * mask, mask
    body, head = parts
    hidden = body(**inputs).last_hidden_state
    selected, wanted = hidden[:, :-1][mask], targets[mask]
    pieces = []
    for start in range(0, selected.shape[0], chunk_size):
        h, t = selected[start:start + chunk_size], wanted[start:start + chunk_size]
        if torch.is_grad_enabled() and h.requires_grad:
            pieces.append(checkpoint(_chunk_logps, head, h, t, use_reentrant=False))
        else:
            pieces.append(_chunk_logps(head, h, t))
    out = hidden.new_zeros(targets.shape, dtype=torch.float32)
    if pieces:
        out = out.masked_scatter(mask, torch.cat(pieces))
    else:
        out = out + hidden[:, :-1].sum(-1).float() * 0.0  # keep the graph connected
    return out, mask


def sequence_logps(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sums, counts)``, both (B,): summed completion log-prob (fp32) and completion token count per row."""
    logps, mask = token_logps(model, input_ids, attention_mask, labels)
    return logps.sum(-1), mask.sum(-1)


def _chunk_logps(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets) under ``head(hidden)``: (N, H), (N,) -> (N,) fp32."""
    return -F.cross_entropy(head(hidden).float(), targets, reduction="none")
