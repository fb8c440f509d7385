"""Token-weighted loss across gradient accumulation: batch 8 x accum 1 == batch 1 x accum 8.

The invariant is about the accumulated gradient, so that is what is compared (captured after the
last micro-batch's backward, before clipping and the optimizer step). Comparing weights after an
Adam step instead is fragile across CPUs: Adam's first update is lr * g / (|g| + eps), so a
gradient element near eps (~1e-8) that differs in its last bits between AVX2 and AVX-512 kernels
moves a weight by a visible ~1e-6 (seen on an AMD EPYC with AVX-512: 1 element in 23,296).

Tolerance: each gradient element is a float32 sum over at most 8 x 19 tokens (and the model's
inner dimensions, <= 64). Splitting the batch and accumulating only reorders that sum; reordering
a float32 sum of n terms moves it by at most about n * 2**-24 * sum|terms|. Measured here (Intel
Xeon, AVX-512): <= 5e-7 of the tensor's largest gradient. We allow 1e-5 of the largest gradient
of each tensor: 20x the measurement, and the guard below shows the bug this catches (per-micro-
batch means) moves gradients by over 1e-2 of the same scale, 1000x the tolerance.
"""

from __future__ import annotations

import torch

from tests.invariants.test_loop import causal_lm, fp32_cfg, pad_collate, run, tiny_features, tiny_model

REL_TOL = 1e-5  # of each tensor's largest |gradient| (see module doc)


def _accumulated_grads(model_dir, features, run_dir, batch_size, grad_accum) -> dict[str, torch.Tensor]:
    """The gradient the loop accumulated over its first window (one optimizer step)."""
    model = tiny_model(model_dir)
    grads: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():  # fires after every micro-batch: the last one is the sum
        param.register_post_accumulate_grad_hook(lambda p, n=name: grads.__setitem__(n, p.grad.detach().clone()))
    cfg = fp32_cfg(max_steps=1, batch_size=batch_size, grad_accum=grad_accum, scheduler="constant", lr=1e-3)
    assert run(model, features, run_dir, cfg).steps == 1
    return grads


def _worst(a: dict, b: dict) -> float:
    """Largest |a - b| over all tensors, relative to each tensor's largest |a|."""
    return max(float((a[n] - b[n]).abs().max() / a[n].abs().max().clamp_min(1e-30)) for n in a)


def test_accumulation_is_token_weighted(tiny_llama_dir, tmp_path):
    features = tiny_features(8)  # variable lengths and -100 prompts: per-batch means would differ
    whole = _accumulated_grads(tiny_llama_dir, features, tmp_path / "b8", 8, 1)
    assert all(g.abs().max() > 0 for g in whole.values())
    for batch_size, accum in ((1, 8), (2, 4)):
        split = _accumulated_grads(tiny_llama_dir, features, tmp_path / f"b{batch_size}", batch_size, accum)
        assert split.keys() == whole.keys()
        assert _worst(whole, split) <= REL_TOL, (batch_size, accum, _worst(whole, split))


def test_mean_of_micro_batch_means_would_differ(tiny_llama_dir):
    """Guards the test above: on these features the naive per-micro-batch mean is NOT equal, in the
    loss and in the gradients, by far more than the tolerance."""
    features = tiny_features(8)
    objective = causal_lm()
    model = tiny_model(tiny_llama_dir)
    weighted = objective.loss(model, pad_collate(features))
    per_batch = [objective.loss(model, pad_collate([f])) for f in features]
    naive = sum(o.total / o.count for o in per_batch) / len(per_batch)
    assert weighted.count == sum(o.count for o in per_batch)
    assert abs(float(weighted.total / weighted.count) - float(naive)) > 1e-4

    def grads_of(loss) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {n: p.grad.detach().clone() for n, p in model.named_parameters()}

    right = grads_of(objective.loss(model, pad_collate(features)).total / weighted.count)
    wrong = grads_of(sum(o.total / o.count for o in (objective.loss(model, pad_collate([f])) for f in features)) / 8)
    assert _worst(right, wrong) > 1000 * REL_TOL
