"""Best-fit-decreasing packing, packed collation and length-grouped batching."""

from __future__ import annotations

import pytest

from lmforge.data.packing import collate_packed, group_by_length, pack_features, padding_fraction


def _feats(lengths):
    return [{"input_ids": [i + 1] * n, "labels": [i + 1] * n} for i, n in enumerate(lengths)]


def test_pack_is_best_fit_decreasing_and_complete():
    lengths = [7, 5, 4, 3, 3, 2, 1]
    rows = pack_features(_feats(lengths), max_length=10)
    # BFD: 7 -> A(3 left); 5 -> B(5); 4 -> B(1); 3 -> A(0); 3 -> C(7); 2 -> C(5); 1 -> B(0)
    assert [r["lengths"] for r in rows] == [[7, 3], [5, 4, 1], [3, 2]]
    assert sorted(i for r in rows for i in r["indices"]) == list(range(len(lengths)))
    for r in rows:
        assert len(r["input_ids"]) == sum(r["lengths"]) <= 10
        assert [r["input_ids"][sum(r["lengths"][:k])] for k in range(len(r["lengths"]))] == [
            i + 1 for i in r["indices"]
        ]


def test_pack_masks_first_label_of_every_example_and_rejects_too_long():
    rows = pack_features(_feats([3, 2]), max_length=8)
    assert rows[0]["labels"] == [-100, 1, 1, -100, 2]
    with pytest.raises(ValueError, match="more than the packing length"):
        pack_features(_feats([9]), max_length=8)
    assert pack_features([{"input_ids": [], "labels": []}], max_length=4) == []


def test_collate_flat_has_restarting_positions_and_no_padding():
    rows = pack_features(_feats([3, 2, 4]), max_length=5)
    batch = collate_packed(rows, flat=True)
    assert set(batch) == {"input_ids", "position_ids", "labels"}
    assert batch["input_ids"].shape == (1, 9)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1]
    assert batch["labels"][0].tolist().count(-100) == 3


def test_collate_rows_pads_with_isolated_unlabelled_tail():
    rows = pack_features(_feats([4, 3, 1]), max_length=4)
    batch = collate_packed(rows, pad_id=0, flat=False)
    assert batch["input_ids"].shape == (2, 4)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3], [0, 1, 2, 0]]
    assert batch["labels"][1].tolist() == [-100, 2, 2, -100]


def test_collate_accepts_plain_features():
    batch = collate_packed([{"input_ids": [5, 6], "labels": [5, 6]}, {"input_ids": [7], "labels": [7]}])
    assert batch["position_ids"].tolist() == [[0, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 6, -100]]


def test_group_by_length_covers_all_and_cuts_padding():
    import random

    rng = random.Random(1)
    lengths = [rng.randint(1, 200) for _ in range(103)]
    feats = _feats(lengths)
    batches = group_by_length(feats, batch_size=8, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert all(len(b) == 8 for b in batches[:-1]) and len(batches[-1]) == 103 % 8
    grouped = padding_fraction([[lengths[i] for i in b] for b in batches])
    naive = padding_fraction([lengths[k : k + 8] for k in range(0, 103, 8)])
    assert grouped < naive / 3
    assert group_by_length(feats, 8, seed=0) == batches
    assert group_by_length(feats, 8, seed=1) != batches
