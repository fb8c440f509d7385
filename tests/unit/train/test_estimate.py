"""The memory/time estimator returns sane, monotone numbers and useful suggestions."""

from __future__ import annotations

import pytest

from lmforge.train.estimate import ModelShape, estimate, model_shape, suggest

SMOL = {  # SmolLM2-135M's config fields
    "hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536, "vocab_size": 49152,
    "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "tie_word_embeddings": True,
    "model_type": "llama",
}
LENGTHS = [64, 100, 128, 200, 256, 300, 380, 512] * 8


def _est(**kw):
    args = {"trainable_params": None, "precision": "fp32", "batch_size": 4, "seq_lengths": LENGTHS}
    args.update(kw)
    return estimate(SMOL, **args)


def test_param_count_matches_smollm2():
    shape = model_shape(SMOL)
    assert abs(shape.total_params - 134_515_008) / 134_515_008 < 0.001


def test_transformers_config_is_accepted(tiny_llama_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(tiny_llama_dir)
    n = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
    assert model_shape(cfg).total_params == n


def test_full_estimate_is_sane():
    e = _est()
    b = e.breakdown
    assert b["weights"] == pytest.approx(134.5e6 * 4, rel=0.01)
    assert b["optimizer"] == pytest.approx(2 * b["weights"], rel=0.01)
    assert max(b.values()) < e.peak_bytes < sum(b.values())
    assert 1e9 < e.peak_bytes < 12e9 and 0 < e.time_per_step_s < 600
    assert e.tokens_per_step == pytest.approx(4 * sum(LENGTHS) / len(LENGTHS))


def test_monotone_in_every_lever():
    base = _est()
    assert _est(seq_lengths=[n * 2 for n in LENGTHS]).peak_bytes > base.peak_bytes
    assert _est(batch_size=8).peak_bytes > base.peak_bytes
    assert _est(precision="bf16").breakdown["activations"] < base.breakdown["activations"]
    assert _est(precision="bf16").time_per_step_s < base.time_per_step_s
    ckpt = _est(activation_checkpointing=True)
    assert ckpt.breakdown["activations"] < base.breakdown["activations"] / 3
    assert ckpt.time_per_step_s > base.time_per_step_s
    assert _est(chunked_loss=True, chunk_size=256).breakdown["logits"] < base.breakdown["logits"]
    lora = _est(trainable_params=4_000_000)
    assert lora.peak_bytes < base.peak_bytes and lora.time_per_step_s < base.time_per_step_s
    assert _est(trainable_params=4_000_000, frozen_bits=4).peak_bytes < lora.peak_bytes
    packed = _est(packing=True, batch_size=1, max_length=1024)
    assert packed.time_per_step_s / packed.tokens_per_step < base.time_per_step_s / base.tokens_per_step
    two = _est(n_processes=2)
    assert two.peak_bytes > 2 * base.peak_bytes and "ddp_buckets" in two.breakdown
    assert two.tokens_per_step == pytest.approx(2 * base.tokens_per_step)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        _est(seq_lengths=[])
    with pytest.raises(ValueError):
        _est(precision="int3")


def test_suggest_returns_changes_that_fit():
    big = _est(batch_size=16, seq_lengths=[1024] * 64)
    assert suggest(big, big.peak_bytes * 2) == []
    budget = big.peak_bytes * 0.6
    tips = suggest(big, budget)
    assert tips and all(t.estimate.peak_bytes <= budget for t in tips)
    times = [t.estimate.time_per_step_s for t in tips]
    assert times == sorted(times)
    tight = suggest(big, 1.6e9)  # only a combination of levers fits
    assert len(tight) == 1 and "+" in tight[0].change and tight[0].estimate.peak_bytes <= 1.6e9
    assert suggest(big, 1e6) == []


def test_model_shape_direct():
    s = ModelShape(hidden=8, layers=1, intermediate=16, vocab=10, heads=2, kv_heads=2, head_dim=4)
    assert s.layer_params == 8 * 8 * 4 + 3 * 8 * 16 + 16
    assert estimate(s, seq_lengths=[4]).peak_bytes > 0


def test_8bit_optimizer_shrinks_state_and_step_temporaries():
    fp32, q = _est(), _est(optimizer="adamw_8bit")
    assert q.breakdown["optimizer"] == pytest.approx(fp32.breakdown["optimizer"] * 2.03 / 8)
    assert q.breakdown["step_temporaries"] == 0.0
    assert q.peak_bytes < fp32.peak_bytes - 5 * 134.5e6  # >= 5 bytes per parameter saved
    assert any("adamw_8bit" in s.change for s in suggest(fp32, q.peak_bytes + 1))


def test_bf16_base_halves_frozen_weights():
    lora = 2_000_000
    fp32_base = _est(trainable_params=lora, precision="bf16")
    bf16_base = _est(trainable_params=lora, precision="bf16", frozen_bits=16)
    frozen = 134_515_008 - lora
    assert fp32_base.breakdown["weights"] - bf16_base.breakdown["weights"] == pytest.approx(frozen * 2, rel=0.01)
    assert any("base_dtype" in s.change for s in suggest(fp32_base, fp32_base.peak_bytes - frozen))


MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536, "vocab_size": 30522,
          "num_attention_heads": 12, "model_type": "bert", "attention_probs_dropout_prob": 0.1,
          "hidden_dropout_prob": 0.1}


def test_model_dropout_keeps_attention_probabilities_and_masks():
    args = {"trainable_params": None, "batch_size": 16, "seq_lengths": [128] * 16, "classifier": True}
    with_dropout = estimate(MINILM, **args).breakdown["activations"]
    without = estimate({**MINILM, "attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0},
                       **args).breakdown["activations"]
    layers_kept = 6 + 3  # every layer + the backward transient ones
    attn = 16 * 12 * 128 * 128 * (3 * 4 + 1)  # scores, probabilities, dropped copy (fp32) + mask, per layer
    hidden = 2 * 16 * 128 * 384 * (4 + 1)
    assert with_dropout - without == pytest.approx(layers_kept * (attn + hidden))


def test_classifier_and_adapter_dropout_terms():
    base = _est(trainable_params=4_000_000)
    assert _est(trainable_params=4_000_000, classifier=True).breakdown["logits"] == 0.0 < base.breakdown["logits"]
    dropped = _est(trainable_params=4_000_000, dropout_elements=30 * 4992)
    tokens = 4 * 512  # the worst padded micro-batch of LENGTHS at batch 4
    assert dropped.breakdown["activations"] - base.breakdown["activations"] == pytest.approx(tokens * 30 * 4992 * 5)


def test_step_share_is_lower_for_a_frozen_base_and_for_attention_dropout():
    """The fitted shares of the matmul rate (benchmarks/RESULTS.md, estimate calibration): full fine-tuning
    reaches more than a frozen base, and a BERT-style model with attention dropout less than one without."""
    from lmforge.train.estimate import ATTENTION_DROPOUT_UTILIZATION, MEASURED_UTILIZATION, measured_utilization

    bert = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536, "vocab_size": 30522,
            "num_attention_heads": 12, "model_type": "bert", "attention_probs_dropout_prob": 0.1}
    assert measured_utilization(SMOL, full=True) == MEASURED_UTILIZATION["full"]
    assert measured_utilization(SMOL, full=False) == MEASURED_UTILIZATION["frozen"] < MEASURED_UTILIZATION["full"]
    frozen_bert = measured_utilization(bert, full=False)
    assert frozen_bert == pytest.approx(MEASURED_UTILIZATION["frozen"] * ATTENTION_DROPOUT_UTILIZATION)
    assert frozen_bert < measured_utilization({**bert, "attention_probs_dropout_prob": 0.0}, full=False)


def test_bf16_steps_reach_a_smaller_share_of_the_bf16_matmul_rate():
    """AMX multiplies big bf16 matrices ~3.5x faster than fp32, a whole step far less (calibrated on an AMX
    Xeon): bf16 has its own shares, still full > frozen, and every other precision uses fp32's."""
    from lmforge.train.estimate import (MEASURED_UTILIZATION, MEASURED_UTILIZATION_BF16,
                                        MEASURED_UTILIZATION_BF16_NO_AMX, measured_utilization)

    assert measured_utilization(SMOL, full=False, precision="bf16", amx=True) == MEASURED_UTILIZATION_BF16["frozen"]
    assert MEASURED_UTILIZATION_BF16["frozen"] < MEASURED_UTILIZATION_BF16["full"] < MEASURED_UTILIZATION["full"]
    # without AMX (AVX512-BF16 dot products) a step keeps a larger share of a smaller bf16 rate (fitted on a Zen 5)
    no_amx = measured_utilization(SMOL, full=False, precision="bf16", amx=False)
    assert no_amx == MEASURED_UTILIZATION_BF16_NO_AMX["frozen"] > MEASURED_UTILIZATION_BF16["frozen"]
    assert MEASURED_UTILIZATION_BF16_NO_AMX["frozen"] < MEASURED_UTILIZATION_BF16_NO_AMX["full"]
    assert measured_utilization(SMOL, full=False, precision="bf16") in (no_amx, MEASURED_UTILIZATION_BF16["frozen"])
    assert measured_utilization(SMOL, full=True, precision="int8") == MEASURED_UTILIZATION["full"]
