"""Deduplication, label checks and the split on crafted inputs."""

from __future__ import annotations

import pytest

from lmforge.config.prepare import LabelConfig
from lmforge.config.schema import SplitConfig
from lmforge.data.prepare.dedup import NearDuplicateIndex, exact_hash, lsh_bands
from lmforge.data.prepare.labels import check_labels, infer_known, resolve_label
from lmforge.data.split import split_records
from lmforge.errors import UserError

BASE = "The coffee arrived quickly, tasted fresh and strong, and the bag was sealed well."


def test_exact_hash_ignores_case_and_spacing_only():
    assert exact_hash("Hello   World") == exact_hash("hello world")
    assert exact_hash("hello world") != exact_hash("hello world!")


def test_near_duplicates_found_and_distinct_texts_not():
    index = NearDuplicateIndex(threshold=0.7, seed=0)
    index.add(0, BASE)
    assert index.find(BASE.replace("strong", "strong!")) == 0
    assert index.find("A thriller about a detective who solves crimes in old London.") is None


def test_near_duplicate_threshold_is_respected():
    loose, strict = NearDuplicateIndex(threshold=0.5, seed=0), NearDuplicateIndex(threshold=0.95, seed=0)
    edited = BASE.replace("quickly", "slowly").replace("fresh", "stale")
    for index in (loose, strict):
        index.add(0, BASE)
    assert loose.find(edited) == 0
    assert strict.find(edited) is None


def test_lsh_bands_fit_the_signature():
    bands, rows = lsh_bands(128, 0.8)
    assert bands * rows <= 128 and 0.5 < (1 / bands) ** (1 / rows) < 0.8


def test_label_variants_typos_and_unknown():
    known = ["negative", "positive"]
    assert resolve_label("Positive ", known, 0.8) == ("positive", "variant")
    assert resolve_label("postive", known, 0.8) == ("positive", "typo")
    assert resolve_label("banana", known, 0.8) == (None, "unknown")
    assert infer_known(["pos"] * 50 + ["neg"] * 49 + ["nge"], 0.02) == ["neg", "pos"]


def _rec(text, label, i):
    return {"text": text, "text_pair": None, "label": label, "_where": f"d.jsonl:{i}"}


def test_label_policy_fix_drop_fail():
    records = [_rec(f"text {i}", "pos" if i % 2 else "neg", i) for i in range(40)]
    records += [_rec("odd one", "Pos", 41), _rec("other", "banana", 42)]
    fixed, report = check_labels(records, LabelConfig(policy="fix", known=["neg", "pos"]))
    assert len(fixed) == 41 and fixed[-1]["label"] == "pos"
    assert {rule for rule, _, _ in report.events} == {"label_variant", "label_unknown"}
    dropped, _ = check_labels(records, LabelConfig(policy="drop", known=["neg", "pos"]))
    assert len(dropped) == 40
    with pytest.raises(UserError) as err:
        check_labels(records, LabelConfig(policy="fail", known=["neg", "pos"]))
    assert "d.jsonl:41" in str(err.value)


def test_conflicting_labels_majority_or_drop():
    records = [_rec("same text", "pos", 1), _rec("Same  text", "pos", 2), _rec("same text", "neg", 3), _rec("x", "neg", 4)]
    kept, report = check_labels(records, LabelConfig(known=["neg", "pos"]))
    assert [r["_where"] for r in kept] == ["d.jsonl:1", "d.jsonl:2", "d.jsonl:4"]
    assert report.balance == {"neg": 1, "pos": 2}
    tie = records[1:]
    kept, _ = check_labels(tie, LabelConfig(known=["neg", "pos"]))
    assert [r["_where"] for r in kept] == ["d.jsonl:4"]
    with pytest.raises(UserError, match="d.jsonl:1"):
        check_labels(records, LabelConfig(policy="fail", known=["neg", "pos"]))


def test_split_ratios_stratified_and_deterministic():
    records = [_rec(f"t{i}", "a" if i < 80 else "b", i) for i in range(100)]
    cfg = SplitConfig(validation=0.1, test=0.2)
    train, val, test = split_records(records, cfg, 3, "classification", validation=0.1, test=0.2)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert sum(r["label"] == "b" for r in test) == 4 and sum(r["label"] == "b" for r in val) == 2
    assert split_records(records, cfg, 3, "classification", validation=0.1, test=0.2) == (train, val, test)
    assert split_records(records, cfg, 4, "classification", validation=0.1, test=0.2)[1] != val


def test_grouped_split_keeps_groups_together():
    records = [dict(_rec(f"t{i}", "a", i), doc=f"doc{i // 5}") for i in range(100)]
    train, val, test = split_records(records, SplitConfig(group_by="doc"), 0, "classification", validation=0.1, test=0.1)
    sides = [{r["doc"] for r in part} for part in (train, val, test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(val) == 10 and len(test) == 10
    with pytest.raises(UserError, match="d.jsonl:0"):
        split_records([_rec("x", "a", 0)], SplitConfig(group_by="doc"), 0, "classification", validation=0.1, test=0.1)


def test_similar_inferred_labels_are_reported_not_merged():
    records = [_rec(f"t{i}", ["other", "othr", "great"][i % 3], i) for i in range(30)]
    kept, report = check_labels(records, LabelConfig())
    assert len(kept) == 30
    assert [(rule, detail) for rule, _, detail in report.events if rule == "label_similar"] == [
        ("label_similar", "'other' and 'othr' look alike; set labels.known to merge them")
    ]


def test_kept_signatures_are_read_back_for_the_leak_check():
    """The leak check reuses the dedup pass's signatures; they must equal freshly computed ones."""
    import numpy as np

    from lmforge.config.prepare import DedupConfig
    from lmforge.data.prepare.audit import RuleLog
    from lmforge.data.prepare.clean import Deduplicator, LeakIndex

    texts = ["the quick brown fox jumps over the lazy dog", "The quick brown fox jumps over the lazy dog",
             "a completely different sentence about tea", "the quick brown fox jumped over the lazy dog today"]
    cfg = DedupConfig(threshold=0.5)
    keeper = Deduplicator("text", cfg, 3, RuleLog(3), "train")
    kept = [t for i, t in enumerate(texts) if keeper.keep({"text": t, "_where": f"f:{i + 1}"})]
    assert kept == [texts[0], texts[2]]
    for i, text in enumerate(kept):
        assert np.array_equal(keeper.signature(i), keeper._near.hasher.signature(text))
    leaks = LeakIndex("text", cfg, 3, RuleLog(3))
    leaks.add({"text": "the quick brown fox jumps over the lazy dog!", "_where": "v:1"})
    assert [leaks.leaks({"text": t, "_where": "t"}, keeper.signature(i)) for i, t in enumerate(kept)] == [True, False]
