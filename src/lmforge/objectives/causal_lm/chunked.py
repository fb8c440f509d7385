"""Causal-LM loss computed only where it counts, in chunks ("loss only where it counts").

A plain ``model(**batch).logits`` materialises a ``tokens x vocab`` tensor (plus its fp32 copy and
the softmax saved for backward): for SmolLM2 (vocab 49152) that is ~200 KB per token, more than
the rest of the activations together. Here the decoder body runs alone, hidden states are kept
only at positions whose shifted label is trained, and the output projection + cross-entropy run
over ``chunk_size`` of those positions at a time, so at most one chunk of logits exists at any
moment. For a plain ``nn.Linear`` head (:class:`LinearCrossEntropy`) each chunk's gradients with
respect to the hidden states (and the head weight, when it trains) are computed in the forward,
while its logits exist, and kept for backward: no logits are saved and none are recomputed.
Other heads (a LoRA-wrapped or quantized head) run under ``torch.utils.checkpoint`` instead (the
chunk's logits are recomputed in backward: one extra ``chunk x hidden x vocab`` matmul per chunk).
Prompt, padding and packing-boundary positions never touch the vocabulary projection.

Models whose logits cannot be reproduced from ``get_output_embeddings()`` alone (logit soft-
capping or scaling in the config, PEFT prompt-learning wrappers that prepend virtual tokens, no
separable decoder) fall back to the full-logits path with the same contract. So do models wrapped
in ``DistributedDataParallel`` (the wrapper has no ``get_decoder``; its forward must run for the
gradient all-reduce to be prepared, so calling the body directly would be wrong there).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lmforge.model.parts import find_body_and_head

IGNORE = -100


def chunked_causal_lm_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], chunk_size: int = 1024
) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over labelled positions, and their count.

    Args:
        model: a ``*ForCausalLM`` transformers model, or a PEFT wrapper around one.
        batch: ``input_ids`` (B, T), ``labels`` (B, T) un-shifted with -100 = not trained, and
            optionally ``attention_mask`` / ``position_ids`` (packed batches: position_ids and
            no attention_mask, see ``lmforge.data.packing``). Other keys are passed to the body.
        chunk_size: labelled positions projected to the vocabulary at once.

    Returns:
        ``(loss_sum, count)``: fp32 scalar tensor (differentiable) = sum over positions t with
        ``labels[:, t+1] != -100`` of CE(logits[:, t], labels[:, t+1]); ``count`` = number of
        such positions. Divide by the count of the whole accumulation window for the mean.
        The model runs with ``use_cache=False`` (required for packed-sequence isolation).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    parts = find_body_and_head(model)
    if parts is None:
        logits = model(**inputs, use_cache=False).logits
        # prompt-learning wrappers prepend virtual-token positions: keep the real ones
        return full_causal_lm_loss(logits[:, -labels.shape[1] :], labels)
    body, head = parts
    hidden = body(**inputs, use_cache=False).last_hidden_state  # (B, T, H)
    targets = labels[:, 1:]
    keep = targets != IGNORE
    count = int(keep.sum())
    selected = hidden[:, :-1][keep]  # (N, H): only positions that predict a trained token
    if count == 0:
        return hidden.sum() * 0.0, 0  # keeps the graph connected (DDP) with a zero loss
    wanted = targets[keep]
    if type(head) is nn.Linear:
        return LinearCrossEntropy.apply(selected, head.weight, head.bias, wanted, chunk_size), count
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    chunk_loss = functools.partial(_chunk_cross_entropy, head)
    for start in range(0, count, chunk_size):
        h, t = selected[start : start + chunk_size], wanted[start : start + chunk_size]
        if torch.is_grad_enabled() and h.requires_grad:
            total = total + checkpoint(chunk_loss, h, t, use_reentrant=False)
        else:
            total = total + chunk_loss(h, t)
    return total, count


@torch.no_grad()
def causal_lm_row_losses(
    model: nn.Module, batch: dict[str, torch.Tensor], chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row version of :func:`chunked_causal_lm_loss` for evaluation (no gradients).

    Returns ``(totals, counts)``, both shape (B,): row b's sum of next-token cross-entropy over its
    labelled positions (fp32) and their number. ``totals.sum()`` / ``counts.sum()`` equal the
    ``(loss_sum, count)`` of :func:`chunked_causal_lm_loss` on the same batch. Rows of a packed
    batch are packed rows, not examples.
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    targets = labels[:, 1:]
    keep = targets != IGNORE
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(targets)[keep]
    counts = keep.sum(dim=1)
    parts = find_body_and_head(model)
    if parts is None:
        logits = model(**inputs, use_cache=False).logits[:, -labels.shape[1]:]
        losses = F.cross_entropy(logits[:, :-1][keep].float(), targets[keep], reduction="none")
    else:
        body, head = parts
        hidden = body(**inputs, use_cache=False).last_hidden_state[:, :-1][keep]
        wanted = targets[keep]
        losses = torch.cat([F.cross_entropy(head(hidden[i:i + chunk_size]).float(), wanted[i:i + chunk_size],
                                            reduction="none") for i in range(0, hidden.shape[0], chunk_size)]
                           or [hidden.new_zeros(0, dtype=torch.float32)])
    totals = torch.zeros(labels.shape[0], dtype=torch.float32, device=labels.device).index_add_(0, rows, losses.float())
    return totals, counts


class LinearCrossEntropy(torch.autograd.Function):
    """``sum(CE(hidden @ weight.T + bias, targets))`` in chunks, gradients computed in the forward.

    Forward, per chunk of ``chunk_size`` rows: logits (in the matmul dtype autocast picks, the
    cross-entropy in fp32), their loss, and while they exist ``d loss / d logits = softmax -
    onehot``, from which the chunk's gradient for ``hidden`` (and for ``weight`` / ``bias`` when
    they require grad) is accumulated. Backward only scales those by the incoming gradient. Same
    math and matmul count as autograd without the chunking; one ``chunk x vocab`` buffer at a
    time instead of ``tokens x vocab`` logits, softmax and gradient.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size: int):  # noqa: D102 (see class)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        # fp32 without autocast: every chunk's logits go into ONE chunk x vocab buffer. A fresh one per
        # chunk is a new 100+ MiB allocation whose pages fault in as the matmul writes them (profiled on
        # a 2-core Xeon inside a full fine-tuning step: 423 ms per 1024 x 768 x 32000 forward matmul vs
        # ~200 ms into a buffer already written).
        reuse = hidden.dtype == weight.dtype == torch.float32 and not torch.is_autocast_enabled(hidden.device.type)
        buffer = hidden.new_empty((min(chunk_size, hidden.shape[0]), weight.shape[0])) if reuse else None
        for start in range(0, hidden.shape[0], chunk_size):
            h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
            # Every chunk x vocab pass below is in place on the logits: a fresh buffer of that size per
            # pass (torch.logsumexp's shifted copy) cost 14x an in-place pass on CPU (page faults of a
            # new 100+ MiB allocation; profiled: 69 ms vs 4.7 ms per chunk of 1024 x 32000).
            if buffer is not None:
                logits = torch.mm(h, weight.t(), out=buffer[:h.shape[0]])
                if bias is not None:
                    logits.add_(bias)
            else:
                logits = F.linear(h, weight, bias).float()
            shifted = logits.sub_(logits.amax(dim=-1, keepdim=True))  # z = logits - max
            target = shifted.gather(1, t[:, None]).squeeze(1)
            sums = shifted.exp_().sum(dim=-1)  # exp(z), in place
            total += (sums.log() - target).sum()  # CE = log sum exp(z) - z_target (the max cancels)
            if not (need_h or need_w or need_b):
                continue
            grad = shifted.div_(sums[:, None])  # softmax, in place
            grad[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            if need_b:
                grad_b += grad.sum(0)
            if not torch.is_autocast_enabled(hidden.device.type):
                grad = grad.to(weight.dtype)  # under autocast the matmuls pick their dtype
            # Straight into the gradient buffers when the dtypes agree (no autocast): no fresh
            # chunk x hidden / vocab x hidden product to allocate and then copy or add.
            direct = grad.dtype == weight.dtype == h.dtype == torch.float32
            if need_h:
                if direct:
                    torch.matmul(grad, weight, out=grad_h[start:start + chunk_size])
                else:
                    grad_h[start:start + chunk_size] = torch.matmul(grad, weight)
            if need_w:
                if direct:
                    grad_w.addmm_(grad.t(), h)
                else:
                    grad_w += torch.matmul(grad.t(), h)
        # Kept on ctx, not save_for_backward: they are this function's own buffers (neither inputs nor
        # outputs), and backward scales them in place and hands them over, so a vocab x hidden weight
        # gradient is not copied into a second fresh buffer (a profiled 135 ms per step on the Xeon).
        ctx.grads = (grad_h, grad_w, grad_b)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # noqa: D102 (see class)
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError("LinearCrossEntropy's backward ran twice: its gradient buffers are handed over on "
                               "the first backward (retain_graph is not supported through this loss)")
        out = [None if g is None else g.mul_(grad_total).to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return out[0], out[1], out[2], None, None


def _chunk_cross_entropy(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of fp32 cross-entropy of ``head(hidden)`` (N, V) against ``targets`` (N,)."""
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def full_causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Reference path: (sum of fp32 CE of ``logits[:, :-1]`` vs ``labels[:, 1:]``, count)."""
    targets = labels[:, 1:].reshape(-1)
    flat = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    count = int((targets != IGNORE).sum())
    loss = F.cross_entropy(flat, targets, ignore_index=IGNORE, reduction="sum")
    return loss, count
