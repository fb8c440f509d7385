"""Streaming preparation: bounded memory, one-shot inputs, compact stores, language filter."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from lmforge.config.schema import SplitConfig
from lmforge.config.prepare import FilterConfig, PrepareConfig
from lmforge.data.prepare import run_prepare
from lmforge.data.prepare.language import identify, language_reason
from lmforge.data.prepare.store import DiskStore, KeyTable

VOCAB = [f"w{i}x" for i in range(500)]


def _lines(n: int, seed: int = 0, words: int = 8):
    """A one-shot generator of ``n`` short text records (``words`` random words each), as a file reader yields them."""
    rng = random.Random(seed)
    for i in range(n):
        yield {"text": " ".join(rng.choice(VOCAB) for _ in range(words)), "_where": f"big.txt:{i + 1}"}


def _peak(n: int, out) -> int:
    tracemalloc.start()
    try:
        result = run_prepare(_lines(n, words=30), "text", PrepareConfig(), out, inputs=[], seed=0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert sum(result.counts.values()) == n


def test_memory_per_example_is_far_below_holding_the_records(tmp_path):
    """Peak traced memory grows by far less per extra example than the records themselves need.

    All rules run (near-duplicate LSH included): their per-example state lives on disk or in a
    few bytes of numpy arrays, never as the records.
    """
    run_prepare(_lines(50), "text", PrepareConfig(), tmp_path / "warm", inputs=[], seed=0)  # imports, regex caches
    small, large = 500, 2500
    growth = _peak(large, tmp_path / "large") - _peak(small, tmp_path / "small")
    tracemalloc.start()
    held = list(_lines(large - small, words=30))
    as_lists = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(held) == large - small
    assert growth < as_lists / 4, (growth, as_lists)


def test_one_shot_generator_gives_the_same_bytes_as_a_list(tmp_path):
    run_prepare(_lines(300), "text", PrepareConfig(), tmp_path / "gen", inputs=[], seed=3)
    run_prepare(list(_lines(300)), "text", PrepareConfig(), tmp_path / "list", inputs=[], seed=3)
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json"):
        assert (tmp_path / "gen" / name).read_bytes() == (tmp_path / "list" / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # work folders removed


def test_split_of_many_records_is_close_to_the_ratios_and_stratified(tmp_path):
    records = [dict(r, text_pair=None, label="a" if i % 4 else "b") for i, r in enumerate(_lines(1000))]
    result = run_prepare(iter(records), "classification", PrepareConfig(), tmp_path / "o", inputs=[], seed=1,
                         split=SplitConfig(validation=0.1, test=0.2))
    assert result.counts == {"train": 700, "validation": 100, "test": 200}
    assert sum(r["label"] == "b" for r in result.test) == 50


def test_key_table_and_disk_store():
    table = KeyTable(buffer=4)
    for i in range(10):
        table.add([2**64 - 1 - i % 3, i % 5], i)
    assert table.get([2**64 - 1]) == [0, 3, 6, 9]
    assert table.get([1, 2**64 - 2]) == [1, 4, 6, 7]
    assert table.get([123456]) == []
    store = DiskStore()
    ids = [store.append(f"item {i}".encode()) for i in range(2000)]
    assert store.get(ids[1234]) == b"item 1234" and len(store) == 2000


SENTENCES = {
    "en": "The coffee arrived quickly and tasted fresh, I will order it again.",
    "de": "Der Kaffee kam schnell an und schmeckte frisch, ich bestelle ihn wieder.",
    "fr": "Le café est arrivé rapidement et avait un goût frais, je vais recommander.",
    "es": "El café llegó rápidamente y sabía fresco, lo volveré a pedir.",
}


def test_language_identification_on_crafted_sentences():
    for lang, text in SENTENCES.items():
        found, confidence = identify(text)
        assert found == lang and confidence > 0.5, (lang, found, confidence)
    cfg = FilterConfig(languages=["en", "fr"])
    assert language_reason(SENTENCES["en"], cfg) is None and language_reason(SENTENCES["fr"], cfg) is None
    assert language_reason(SENTENCES["de"], cfg).startswith("de (")
    assert language_reason("Ja, danke.", cfg) is None  # too short to judge: kept


def test_language_rule_in_a_run(tmp_path):
    records = [{"text": f"{text} ({i})", "_where": f"m.txt:{i}"} for i, text in enumerate(list(SENTENCES.values()) * 3)]
    cfg = PrepareConfig(filter={"languages": ["en"]}, dedup={"near": False})
    result = run_prepare(records, "text", cfg, tmp_path / "o", inputs=[], seed=0)
    kept = result.train + result.validation + result.test
    assert len(kept) == 3 and all(r["text"].startswith("The coffee") for r in kept)
    rule = json.loads(result.manifest_path.read_text())["rules"]["filter_language"]
    assert rule["removed"] == 9 and rule["examples"][0]["detail"].startswith("de (")


def test_without_language_filter_nothing_is_identified(tmp_path):
    assert PrepareConfig().filter.languages is None
    with pytest.raises(Exception):
        FilterConfig(min_language_confidence=2)
