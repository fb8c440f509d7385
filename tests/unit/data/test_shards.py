"""Memory-mapped token shards: exact round trip, shard boundaries, bounded memory, train() input."""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest

from lmforge.data.shards import TokenShards, write_token_shards


def features(n: int, seed: int = 0, max_len: int = 30):
    """Generator (never a list): variable-length causal features with a masked prompt."""
    rng = np.random.default_rng(seed)
    for length in rng.integers(1, max_len + 1, size=n).tolist():
        ids = rng.integers(0, 50_000, size=length).tolist()
        yield {"input_ids": ids, "labels": [-100] + ids[1:], "_where": "x.jsonl:1"}


def test_round_trip_across_shard_boundaries(tmp_path):
    expected = [{k: v for k, v in f.items() if k != "_where"} for f in features(300)]
    write_token_shards(features(300), tmp_path / "tok", shard_tokens=100)
    shards = TokenShards(tmp_path / "tok")
    assert len(shards) == 300
    assert len(shards.meta["shards"]) > 10  # really split into many shards
    assert [shards[i] for i in range(300)] == expected
    assert shards[-1] == expected[-1]
    assert list(shards.lengths()) == [len(f["input_ids"]) for f in expected]
    with pytest.raises(IndexError):
        shards[300]


def test_scalar_fields_and_an_example_longer_than_a_shard(tmp_path):
    items = [{"input_ids": [1, 2, 3], "label": 1}, {"input_ids": list(range(50)), "label": 0},
             {"input_ids": [7], "label": 2, "token_type_ids": None}]
    write_token_shards(iter(items), tmp_path / "cls", shard_tokens=8)
    shards = TokenShards(tmp_path / "cls")
    assert [shards[i] for i in range(3)] == [{k: v for k, v in f.items() if v is not None} for f in items]
    restored = pickle.loads(pickle.dumps(shards))  # workers / spawned processes get the folder only
    assert restored[1]["input_ids"] == list(range(50))


def test_mismatched_fields_and_empty_input_fail_and_leave_no_folder(tmp_path):
    bad = [{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [3]}]
    with pytest.raises(ValueError, match="fields"):
        write_token_shards(iter(bad), tmp_path / "bad", shard_tokens=8)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="no features"):
        write_token_shards(iter([]), tmp_path / "empty")


def test_writing_and_reading_keep_memory_bounded(tmp_path):
    """~600k tokens (4.8 MB as int32 ids + labels) go through with a 16k-token buffer; reading
    every example back allocates nothing that grows with the corpus (pages are memory-mapped)."""
    n = 20_000
    tracemalloc.start()
    write_token_shards(features(n, max_len=60), tmp_path / "big", shard_tokens=1 << 14)
    _, write_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    shards = TokenShards(tmp_path / "big")
    corpus_bytes = shards.meta["tokens"] * 4 * 2
    assert corpus_bytes > 4_000_000
    assert write_peak < corpus_bytes / 8, (write_peak, corpus_bytes)
    tracemalloc.start()
    total = 0
    for i in range(0, n, 7):
        total += len(shards[i]["input_ids"])
    _, read_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total > 0
    assert read_peak < 1_000_000, read_peak
    assert isinstance(shards.index, np.memmap)
