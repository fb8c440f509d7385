"""encode_to_shards: training features tokenized (and packed) once into memory-mapped shards."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from lmforge.data.packing import pack_features
from lmforge.data.shards import TokenShards, encode_to_shards


def records(n: int, seed: int = 0, max_len: int = 30) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"text": " ".join(map(str, rng.integers(0, 50_000, size=int(k)).tolist())), "_where": f"x:{i}"}
            for i, k in enumerate(rng.integers(2, max_len + 1, size=n))]


class Encoder:
    """encode(records) -> causal features; counts the records it saw."""

    def __init__(self):
        self.seen = 0

    def __call__(self, part: list[dict]) -> list[dict]:
        self.seen += len(part)
        out = []
        for r in part:
            ids = [int(t) for t in r["text"].split()]
            out.append({"input_ids": ids, "labels": [-100] + ids[1:]})
        return out


def test_unpacked_shards_equal_the_encoded_features_and_are_reused(tmp_path):
    recs = records(200)
    enc = Encoder()
    shards = encode_to_shards(recs, enc, tmp_path / "s", key={"v": 1}, block=64)
    assert enc.seen == 200 and len(shards) == 200
    assert [shards[i] for i in range(200)] == Encoder()(recs)
    again = Encoder()
    assert len(encode_to_shards(recs, again, tmp_path / "s", key={"v": 1}, block=64)) == 200
    assert again.seen == 0  # same records and key: reused, nothing encoded
    changed = Encoder()
    encode_to_shards(recs, changed, tmp_path / "s", key={"v": 2}, block=64)
    assert changed.seen == 200  # another key: written again


def test_packed_shards_keep_example_lengths_per_row(tmp_path):
    recs = records(150)
    shards = encode_to_shards(recs, Encoder(), tmp_path / "p", key={}, pack_length=64, block=50)
    expected = []
    for start in range(0, 150, 50):  # packing happens block by block
        expected += pack_features(Encoder()(recs[start : start + 50]), 64)
    assert len(shards) == len(expected) < 150
    assert [shards[i] for i in range(len(shards))] == expected
    assert all(sum(shards[i]["lengths"]) == len(shards[i]["input_ids"]) <= 64 for i in range(len(shards)))


def test_a_folder_with_other_files_is_never_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a token-shard folder"):
        encode_to_shards(records(5), Encoder(), tmp_path / "mine", key={})
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_other_processes_wait_for_the_writer(tmp_path):
    recs = records(20)
    with pytest.raises(TimeoutError):
        encode_to_shards(recs, Encoder(), tmp_path / "w", key={}, write=False, wait_s=0.2)
    encode_to_shards(recs, Encoder(), tmp_path / "w", key={})
    reader = Encoder()
    assert len(encode_to_shards(recs, reader, tmp_path / "w", key={}, write=False, wait_s=5)) == 20
    assert reader.seen == 0


def test_encoding_into_shards_keeps_memory_bounded(tmp_path):
    """20k records (~600k tokens; ~40 MB as python feature lists) are encoded 256 at a time."""
    recs = records(20_000, max_len=60)
    tracemalloc.start()
    shards = encode_to_shards(recs, Encoder(), tmp_path / "big", key={}, block=256, shard_tokens=1 << 14)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tokens = shards.meta["tokens"]
    assert tokens > 500_000
    python_lists = tokens * 2 * 36  # two int lists per feature, ~36 bytes per python int entry
    assert peak < python_lists / 10, (peak, python_lists)
    assert isinstance(TokenShards(tmp_path / "big").index, np.memmap)
