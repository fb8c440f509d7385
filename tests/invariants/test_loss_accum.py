"""Token-weighted loss across gradient accumulation: batch 8 x accum 1 == batch 1 x accum 8."""

from __future__ import annotations

import torch

from tests.invariants.test_loop import fp32_cfg, pad_collate, params_of, run, tiny_features, tiny_model


def _one_step(model_dir, features, run_dir, batch_size, grad_accum):
    model = tiny_model(model_dir)
    # lr 1e-3: Adam's first update is ~lr * g / (|g| + eps), so fp32 rounding in gradients near
    # eps (~1e-8) moves a weight by up to ~lr * 1e-1; 1e-3 keeps that under the 1e-6 tolerance.
    cfg = fp32_cfg(max_steps=1, batch_size=batch_size, grad_accum=grad_accum, scheduler="constant", lr=1e-3)
    result = run(model, features, run_dir, cfg)
    assert result.steps == 1
    return params_of(model)


def test_accumulation_is_token_weighted(tiny_llama_dir, tmp_path):
    features = tiny_features(8)  # variable lengths and -100 prompts: per-batch means would differ
    start = params_of(tiny_model(tiny_llama_dir))
    whole = _one_step(tiny_llama_dir, features, tmp_path / "b8", 8, 1)
    for batch_size, accum in ((1, 8), (2, 4)):
        split = _one_step(tiny_llama_dir, features, tmp_path / f"b{batch_size}", batch_size, accum)
        for name in whole:
            assert torch.allclose(whole[name], split[name], atol=1e-6, rtol=0), name
    assert any(not torch.equal(start[n], whole[n]) for n in start)


def test_mean_of_micro_batch_means_would_differ(tiny_llama_dir):
    """Guards the test above: on these features the naive per-micro-batch mean is NOT equal."""
    from tests.invariants.test_loop import causal_lm

    features = tiny_features(8)
    objective = causal_lm()
    model = tiny_model(tiny_llama_dir)
    weighted = objective.loss(model, pad_collate(features))
    per_batch = [objective.loss(model, pad_collate([f])) for f in features]
    naive = sum(o.total / o.count for o in per_batch) / len(per_batch)
    assert weighted.count == sum(o.count for o in per_batch)
    assert abs(float(weighted.total / weighted.count) - float(naive)) > 1e-4
