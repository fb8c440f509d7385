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
