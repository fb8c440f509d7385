"""Packed examples never attend across boundaries, and the token-weighted loss is layout-free."""

from __future__ import annotations

import pytest
import torch

from lmforge.data.packing import collate_packed, pack_features
from lmforge.objectives.causal_lm.chunked import chunked_causal_lm_loss, full_causal_lm_loss

LENGTHS = [5, 9, 3, 12, 7, 4, 11, 2]


def _features(vocab: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    feats = []
    for n in LENGTHS:
        ids = torch.randint(4, vocab, (n,), generator=g).tolist()
        prompt = n // 3  # first third is an untrained prompt
        feats.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return feats


def _model(path, attn):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn)
    return model.eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("flat", [True, False])
def test_packed_logits_equal_alone(tiny_llama_dir, attn, flat):
    model = _model(tiny_llama_dir, attn)
    feats = _features(model.config.vocab_size)
    rows = pack_features(feats, max_length=20)
    assert len(rows) < len(feats)  # something really got packed together
    batch = collate_packed(rows, pad_id=0, flat=flat)
    assert "attention_mask" not in batch
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits
        checked = 0
        for r, row in enumerate(rows):
            start = 0 if not flat else sum(len(x["input_ids"]) for x in rows[:r])
            b = 0 if flat else r
            for idx, n in zip(row["indices"], row["lengths"]):
                alone = model(input_ids=torch.tensor([feats[idx]["input_ids"]])).logits[0]
                torch.testing.assert_close(logits[b, start : start + n], alone, atol=1e-5, rtol=0)
                start += n
                checked += 1
    assert checked == len(feats)


def test_use_cache_true_breaks_isolation_on_sdpa(tiny_llama_dir):
    """Documents PITFALLS.md: with the cache on, packed rows leak. If this fails, upstream changed."""
    model = _model(tiny_llama_dir, "sdpa")
    feats = _features(model.config.vocab_size)
    rows = pack_features(feats, max_length=20)
    row = next(r for r in rows if len(r["lengths"]) > 1)
    batch = collate_packed([row])
    with torch.no_grad():
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True)
        safe = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    n0 = row["lengths"][0]
    assert not torch.allclose(leaky.logits[0, n0:], safe.logits[0, n0:], atol=1e-4)


def _padded(feats: list[dict], pad_id: int = 0) -> dict:
    width = max(len(f["input_ids"]) for f in feats)
    ids, mask, labels = [], [], []
    for f in feats:
        pad = width - len(f["input_ids"])
        ids.append(f["input_ids"] + [pad_id] * pad)
        mask.append([1] * len(f["input_ids"]) + [0] * pad)
        labels.append(f["labels"] + [-100] * pad)
    return {k: torch.tensor(v) for k, v in zip(("input_ids", "attention_mask", "labels"), (ids, mask, labels))}


def test_token_weighted_loss_equal_across_layouts(tiny_llama_dir):
    model = _model(tiny_llama_dir, "sdpa")
    feats = _features(model.config.vocab_size)
    with torch.no_grad():
        packed = collate_packed(pack_features(feats, max_length=20))
        p_sum, p_count = chunked_causal_lm_loss(model, packed, chunk_size=7)
        padded = _padded(feats)
        logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        d_sum, d_count = full_causal_lm_loss(logits, padded["labels"])
        a_sum, a_count = 0.0, 0
        for f in feats:  # batch 1 x accumulation 8
            one = {k: torch.tensor([v]) for k, v in f.items()}
            s, c = full_causal_lm_loss(model(input_ids=one["input_ids"]).logits, one["labels"])
            a_sum, a_count = a_sum + s, a_count + c
    expected = sum(sum(1 for t in f["labels"][1:] if t != -100) for f in feats)
    assert p_count == d_count == a_count == expected
    torch.testing.assert_close(p_sum / p_count, d_sum / d_count, atol=1e-5, rtol=0)
    torch.testing.assert_close(p_sum / p_count, a_sum / a_count, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- packed attention
# lmforge.model.packed_attention: one causal SDPA call per packed sequence instead of a T x T mask.
def _tiny_causal_lm(model_type: str):
    """A random 2-layer model of ``model_type`` (GQA: 4 query heads, 2 key/value heads), sdpa attention."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                  max_position_embeddings=128, attn_implementation="sdpa")
    if model_type == "mistral":
        config.sliding_window = None  # Mistral v0.3 and later: plain causal attention
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.config.use_cache = False
    return model


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3"])
def test_packed_attention_equals_sdpa_block_mask_and_alone(model_type):
    """Packed attention gives sdpa's logits and gradients on a packed row (block-diagonal mask),
    and every packed example's logits equal the example run alone. Tolerance: fp32 attention
    over <= 12 keys reassociated (per-segment vs masked full row): ~1e-7 relative, checked at 1e-5."""
    from lmforge.model.packed_attention import PACKED_ATTENTION, restore_attention, use_packed_attention

    model = _tiny_causal_lm(model_type).train()
    feats = _features(model.config.vocab_size)
    batch = collate_packed(pack_features(feats, max_length=40))
    assert batch["input_ids"].shape[0] == 1 and len(feats) > 3

    def logits_and_grads():
        model.zero_grad()
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        logits.pow(2).mean().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    ref_logits, ref_grads = logits_and_grads()
    previous = use_packed_attention(model)
    assert previous == "sdpa" and model.config._attn_implementation == PACKED_ATTENTION
    logits, grads = logits_and_grads()
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        start = 0
        for f in sorted(feats, key=lambda f: -len(f["input_ids"])):  # pack order: longest first
            n = len(f["input_ids"])
            alone = model(input_ids=torch.tensor([f["input_ids"]])).logits[0]
            torch.testing.assert_close(logits[0, start:start + n], alone, atol=1e-5, rtol=0)
            start += n
    restore_attention(model, previous)
    assert model.config._attn_implementation == "sdpa"


def test_packed_attention_leaves_padding_cache_and_generation_to_sdpa(tiny_llama_dir):
    """Padded batches (attention_mask), the rows layout and cached generation give sdpa's results."""
    from lmforge.model.packed_attention import restore_attention, use_packed_attention

    model = _model(tiny_llama_dir, "sdpa")
    feats = _features(model.config.vocab_size)
    padded = _padded(feats)
    rows = collate_packed(pack_features(feats, max_length=20), flat=False)
    with torch.no_grad():
        ref = [model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits,
               model(input_ids=rows["input_ids"], position_ids=rows["position_ids"], use_cache=False).logits,
               model.generate(padded["input_ids"][:1, :6], max_new_tokens=6, do_sample=False)]
        previous = use_packed_attention(model)
        got = [model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits,
               model(input_ids=rows["input_ids"], position_ids=rows["position_ids"], use_cache=False).logits,
               model.generate(padded["input_ids"][:1, :6], max_new_tokens=6, do_sample=False)]
    restore_attention(model, previous)
    mask = padded["attention_mask"].bool()
    torch.testing.assert_close(got[0][mask], ref[0][mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=0)
    assert torch.equal(got[2], ref[2])


def test_packed_attention_only_for_plain_causal_models():
    from lmforge.model.packed_attention import packed_attention_support, use_packed_attention

    model = _tiny_causal_lm("mistral")
    model.config.sliding_window = 4  # a sliding window is not plain causal attention
    ok, why = packed_attention_support(model)
    assert not ok and "sliding_window" in why
    assert use_packed_attention(model) is None and model.config._attn_implementation == "sdpa"
    qwen = _tiny_causal_lm("qwen2")
    qwen.config.sliding_window, qwen.config.use_sliding_window = 4096, False  # as Qwen2 checkpoints ship
    assert packed_attention_support(qwen) == (True, "")
    eager = _tiny_causal_lm("llama")
    eager.set_attn_implementation("eager")
    assert packed_attention_support(eager) == (False, "attention implementation is 'eager', not sdpa")
