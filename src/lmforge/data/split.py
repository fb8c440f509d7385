"""The one train / validation / test split engine, used with and without ``data.prepare``.

A record's rank depends only on the record itself (its text, or its ``group_by`` value) and the seed:
rank = the first 8 bytes of sha256(seed, key). Each stratum's lowest ranks go to validation, the next to
test (sizes from the shares). So the same records and seed always split the same way, in any order,
with or without data preparation (when it removes nothing), exact copies land on the same side (no
leak between splits), and grouped splits keep every record of a group on one side.

Streaming: :class:`SplitPlan` takes one record at a time and keeps only a 64-bit rank and a stratum
id per record (12 bytes).
"""

from __future__ import annotations

import hashlib
from array import array

import numpy as np

from lmforge.config.schema import SplitConfig
from lmforge.data.formats import get_format
from lmforge.errors import UserError

TRAIN, VALIDATION, TEST = 0, 1, 2


def split_rank(seed: int, key: str) -> int:
    """64-bit rank of ``key`` under ``seed`` (first 8 bytes of sha256)."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).digest()[:8], "big")


def cut_sizes(n: int, validation: float, test: float) -> tuple[int, int]:
    """Sizes (n_validation, n_test) for ``n`` items; each non-zero share gets >= 1 item when n >= 3."""
    n_val = round(n * validation)
    n_test = round(n * test)
    if n >= 3:
        n_val = max(n_val, 1 if validation > 0 else 0)
        n_test = max(n_test, 1 if test > 0 else 0)
    while n_val + n_test >= n and (n_val or n_test):
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


class SplitPlan:
    """Two-step split: :meth:`add` every record (in order), then :meth:`side` of each (same order).

    ``validation`` / ``test``: the shares to carve (a part the user gave as its own file has share 0).
    Stratifies by the format's label field when ``cfg.stratify`` (ignored with ``group_by``). Raises
    UserError naming the record when ``group_by`` names a field it lacks.
    """

    def __init__(self, cfg: SplitConfig, seed: int, data_format: str, *, validation: float, test: float):
        self.cfg, self.seed = cfg, seed
        self.spec = get_format(data_format)
        self.validation, self.test = validation, test
        self.label = self.spec.label if cfg.stratify and cfg.group_by is None else None
        self._ranks = array("Q")
        self._strata = array("i")
        self._names: dict[str, int] = {}
        self._limits: dict[int, tuple[int, int]] = {}

    def _rank(self, record: dict) -> int:
        if self.cfg.group_by is None:
            return split_rank(self.seed, "\n".join(self.spec.strings(record)))
        if self.cfg.group_by not in record:
            raise UserError(
                f"split.group_by: record has no field '{self.cfg.group_by}'",
                where=str(record.get("_where", "?")),
                hint="name a field every record has, or remove data.split.group_by",
            )
        return split_rank(self.seed, f"group\x00{record[self.cfg.group_by]}")

    def add(self, record: dict) -> None:
        """Count the next record (its position is its index)."""
        self._ranks.append(self._rank(record))
        name = str(record.get(self.label)) if self.label else ""
        self._strata.append(self._names.setdefault(name, len(self._names)))

    def finish(self) -> None:
        """Fix the rank limits of validation and test in each stratum."""
        ranks = np.frombuffer(self._ranks, dtype=np.uint64) if self._ranks else np.zeros(0, np.uint64)
        strata = np.frombuffer(self._strata, dtype=np.int32) if self._strata else np.zeros(0, np.int32)
        groups = [np.unique(ranks[strata == stratum]) for stratum in range(len(self._names))]
        sizes = [cut_sizes(int(units.size), self.validation, self.test) for units in groups]
        starved = (self.validation > 0 and not sum(v for v, _ in sizes)) or (self.test > 0 and not sum(t for _, t in sizes))
        if len(groups) > 1 and starved:
            # Every label has too few distinct records to give each part one: stratifying would hold out
            # nothing, so split the whole set as one stratum instead (still ranked by each record's text).
            self._strata = array("i", bytes(len(self._strata) * 4))
            groups = [np.unique(ranks)]
            sizes = [cut_sizes(int(groups[0].size), self.validation, self.test)]
            self._names = {"": 0}
        for stratum, (units, (n_val, n_test)) in enumerate(zip(groups, sizes)):
            val_max = int(units[n_val - 1]) if n_val else -1
            test_max = int(units[n_val + n_test - 1]) if n_test else -1
            self._limits[stratum] = (val_max, test_max)

    def side(self, index: int) -> int:
        """TRAIN, VALIDATION or TEST for the record added at position ``index``."""
        rank, stratum = self._ranks[index], self._strata[index]
        val_max, test_max = self._limits[stratum]
        if rank <= val_max:
            return VALIDATION
        return TEST if rank <= test_max else TRAIN


def split_records(records: list[dict], cfg: SplitConfig, seed: int, data_format: str, *, validation: float,
                  test: float) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, test), each in input order: :class:`SplitPlan` on a list."""
    plan = SplitPlan(cfg, seed, data_format, validation=validation, test=test)
    for record in records:
        plan.add(record)
    plan.finish()
    parts: tuple[list[dict], list[dict], list[dict]] = ([], [], [])
    for i, record in enumerate(records):
        parts[plan.side(i)].append(record)
    return parts
