"""Padding-free packing of causal-LM examples, and length-grouped batching.

Packing puts several variable-length examples side by side in one row so no compute is spent on
padding. Isolation between packed examples comes from transformers' packed-sequence detection
(``transformers.masking_utils.find_packed_sequence_indices``, 5.x): when a forward gets
``position_ids`` that restart at 0, NO ``attention_mask`` and NO cache (``use_cache=False``), the
sdpa / eager / flex mask builders put every restart in its own causal block, and flash-attention
derives ``cu_seq_lens`` from the same restarts. Pass an ``attention_mask`` or leave the cache on
and packed examples silently attend to each other (see shared/PITFALLS.md): the batches built
here therefore carry no ``attention_mask`` and callers must run the model with
``use_cache=False``. ``tests/invariants/test_packing_isolation.py`` checks it on a real model.

Labels follow the transformers convention (un-shifted: the model predicts ``labels[t]`` from
positions ``< t``). The first token of every example gets label -100, so no example is trained to
predict the first token of the example packed before it.
"""

from __future__ import annotations

import bisect
import random
from typing import Any

IGNORE = -100


def pack_features(features: list[dict], max_length: int) -> list[dict]:
    """Pack per-example features into rows of at most ``max_length`` tokens (best-fit decreasing).

    Args:
        features: ``[{"input_ids": list[int], "labels": list[int]}, ...]`` (labels -100 = not
            trained), each at most ``max_length`` tokens long; empty examples are dropped.
        max_length: row capacity in tokens (the model's context length in practice).

    Returns:
        Rows ``{"input_ids": list[int], "labels": list[int], "lengths": list[int],
        "indices": list[int]}``: the examples' tokens concatenated, ``lengths`` the per-example
        lengths (the boundaries), ``indices`` the positions of the examples in ``features``.
        Labels at each example's first position are -100. Deterministic for a given input.

    Raises:
        ValueError: an example is longer than ``max_length`` (encode/truncate it first).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    order = sorted(
        (i for i, f in enumerate(features) if len(f["input_ids"]) > 0),
        key=lambda i: (-len(features[i]["input_ids"]), i),
    )
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (remaining capacity, bin index)
    for i in order:
        n = len(features[i]["input_ids"])
        if n > max_length:
            raise ValueError(
                f"example {i} has {n} tokens, more than the packing length {max_length}; "
                "truncate it when encoding"
            )
        slot = bisect.bisect_left(free, (n, -1))  # tightest bin that still fits n tokens
        if slot < len(free):
            remaining, b = free.pop(slot)
        else:
            remaining, b = max_length, len(bins)
            bins.append([])
        bins[b].append(i)
        if remaining - n > 0:
            bisect.insort(free, (remaining - n, b))
    return [_build_row(features, members) for members in bins]


def _build_row(features: list[dict], members: list[int]) -> dict:
    """Concatenate the examples ``members`` into one row dict (see ``pack_features``)."""
    input_ids: list[int] = []
    labels: list[int] = []
    lengths: list[int] = []
    for i in members:
        ids, lab = list(features[i]["input_ids"]), list(features[i]["labels"])
        if len(ids) != len(lab):
            raise ValueError(f"example {i}: input_ids and labels differ in length")
        lab[0] = IGNORE
        input_ids += ids
        labels += lab
        lengths.append(len(ids))
    return {"input_ids": input_ids, "labels": labels, "lengths": lengths, "indices": list(members)}


def collate_packed(rows: list[dict], pad_id: int = 0, flat: bool = True) -> dict[str, Any]:
    """Packed rows -> one padding-free batch of tensors for ``model(**batch, use_cache=False)``.

    Args:
        rows: rows from ``pack_features`` (or single features with ``input_ids``/``labels`` and
            optional ``lengths``; a row without ``lengths`` is one example).
        pad_id: token id for the tail padding of the ``flat=False`` layout (never attended to
            by real tokens, never labelled).
        flat: True -> all rows concatenated into shape ``(1, total_tokens)`` with no padding at
            all; False -> shape ``(len(rows), longest_row)``, shorter rows padded at the end
            (the padding forms its own isolated block with restarting positions).

    Returns:
        ``{"input_ids", "position_ids", "labels"}`` long tensors of the same shape. No
        ``attention_mask``: its absence is what turns on transformers' packed-sequence masking.
        ``position_ids`` restart at 0 for every example; ``labels`` are -100 at every example's
        first token and on padding.
    """
    import torch

    seqs = [_row_arrays(r) for r in rows]
    if flat:
        ids = [t for s in seqs for t in s[0]]
        pos = [t for s in seqs for t in s[1]]
        lab = [t for s in seqs for t in s[2]]
        tensors = [[ids], [pos], [lab]]
    else:
        width = max(len(s[0]) for s in seqs)
        tensors = [[], [], []]
        for ids, pos, lab in seqs:
            pad = width - len(ids)
            tensors[0].append(ids + [pad_id] * pad)
            tensors[1].append(pos + list(range(pad)))
            tensors[2].append(lab + [IGNORE] * pad)
    names = ("input_ids", "position_ids", "labels")
    return {k: torch.tensor(v, dtype=torch.long) for k, v in zip(names, tensors)}


def _row_arrays(row: dict) -> tuple[list[int], list[int], list[int]]:
    """(input_ids, position_ids, labels) of one row, labels masked at example starts."""
    ids = list(row["input_ids"])
    labels = list(row["labels"])
    lengths = row.get("lengths") or [len(ids)]
    if sum(lengths) != len(ids) or len(labels) != len(ids):
        raise ValueError("row lengths do not add up to its input_ids/labels")
    positions: list[int] = []
    start = 0
    for n in lengths:
        positions += range(n)
        labels[start] = IGNORE
        start += n
    return ids, positions, labels


def group_by_length(
    features: list[dict], batch_size: int, seed: int, mega_batches: int = 50
) -> list[list[int]]:
    """Index batches of similar-length examples, for objectives that cannot pack.

    Indices are shuffled with ``seed``, cut into mega-batches of ``batch_size * mega_batches``
    examples, each sorted by length (longest first) and cut into batches; the batch order is then
    shuffled. Padding waste drops to near zero while batches stay random across epochs (pass a
    different seed per epoch).

    Returns:
        A list of batches, each a list of indices into ``features``; every index appears once and
        every batch except possibly the last holds ``batch_size`` indices.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = random.Random(seed)
    idx = list(range(len(features)))
    rng.shuffle(idx)
    size = batch_size * max(1, mega_batches)
    batches: list[list[int]] = []
    for m in range(0, len(idx), size):
        mega = sorted(idx[m : m + size], key=lambda i: -len(features[i]["input_ids"]))
        batches += [mega[b : b + batch_size] for b in range(0, len(mega), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    partial = [b for b in batches if len(b) < batch_size]
    rng.shuffle(full)
    return full + _merge_partials(partial, batch_size)


def _merge_partials(partial: list[list[int]], batch_size: int) -> list[list[int]]:
    """Refill short batches (at most one per mega-batch) into full ones plus one final short one."""
    flat = [i for b in partial for i in b]
    return [flat[k : k + batch_size] for k in range(0, len(flat), batch_size)]


def padding_fraction(batch_lengths: list[list[int]]) -> float:
    """Fraction of tokens that are padding when each batch is padded to its longest member.

    ``batch_lengths`` lists the member lengths per batch. Returns a value in [0, 1).
    """
    real = sum(sum(b) for b in batch_lengths)
    padded = sum(max(b) * len(b) for b in batch_lengths if b)
    return 0.0 if padded == 0 else 1.0 - real / padded
