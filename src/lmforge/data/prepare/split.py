"""Deterministic train/validation/test split: by ratio, stratified by label, grouped by a key.

Streaming: :class:`SplitPlan` takes one record at a time and keeps only a 64-bit rank and a
stratum id per record (12 bytes). The rank is sha256(seed, key) where the key is the record's
position (or its ``group_by`` value), so the same records and seed always give the same split,
independent of Python's hash seed. After the pass, each stratum's lowest ranks go to
validation, the next to test (sizes from the ratios); grouped splits rank groups, so every
record of one group lands on one side.
"""

from __future__ import annotations

import hashlib
from array import array

import numpy as np

from lmforge.config.prepare import SplitConfig
from lmforge.data.prepare.fields import where
from lmforge.errors import UserError

TRAIN, VALIDATION, TEST = 0, 1, 2


def split_rank(seed: int, key: str) -> int:
    """64-bit rank of ``key`` under ``seed`` (first 8 bytes of sha256)."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).digest()[:8], "big")


def _cut(n: int, validation: float, test: float) -> tuple[int, int]:
    """Sizes (n_validation, n_test) for ``n`` items; each non-zero ratio gets >= 1 item when n >= 3."""
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

    Stratifies by ``label`` when ``stratify`` (ignored with ``group_by``). Raises UserError
    naming the record when ``group_by`` names a field it lacks.
    """

    def __init__(self, cfg: SplitConfig, seed: int, stratify: bool = False):
        self.cfg, self.seed = cfg, seed
        self.stratify = stratify and cfg.group_by is None
        self._ranks = array("Q")
        self._strata = array("i")
        self._names: dict[str, int] = {}
        self._limits: dict[int, tuple[int, int]] = {}

    def _rank(self, record: dict, index: int) -> int:
        if self.cfg.group_by is None:
            return split_rank(self.seed, f"#{index}")
        if self.cfg.group_by not in record:
            raise UserError(
                f"split.group_by: record has no field '{self.cfg.group_by}'",
                where=where(record),
                hint="name a field every record has, or remove data.prepare.split.group_by",
            )
        return split_rank(self.seed, str(record[self.cfg.group_by]))

    def _stratum(self, record: dict) -> int:
        name = str(record.get("label")) if self.stratify else ""
        return self._names.setdefault(name, len(self._names))

    def add(self, record: dict) -> None:
        """Count the next record (its position is its index)."""
        self._ranks.append(self._rank(record, len(self._ranks)))
        self._strata.append(self._stratum(record))

    def finish(self) -> None:
        """Fix the rank limits of validation and test in each stratum."""
        ranks = np.frombuffer(self._ranks, dtype=np.uint64) if self._ranks else np.zeros(0, np.uint64)
        strata = np.frombuffer(self._strata, dtype=np.int32) if self._strata else np.zeros(0, np.int32)
        for stratum in range(len(self._names)):
            units = np.unique(ranks[strata == stratum])
            n_val, n_test = _cut(int(units.size), self.cfg.validation, self.cfg.test)
            val_max = int(units[n_val - 1]) if n_val else -1
            test_max = int(units[n_val + n_test - 1]) if n_test else -1
            self._limits[stratum] = (val_max, test_max)

    def side(self, record: dict, index: int) -> int:
        """TRAIN, VALIDATION or TEST for the record added at position ``index``."""
        rank, stratum = self._ranks[index], self._strata[index]
        val_max, test_max = self._limits[stratum]
        if rank <= val_max:
            return VALIDATION
        return TEST if rank <= test_max else TRAIN


def split_records(records: list[dict], cfg: SplitConfig, seed: int, stratify: bool = False) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, test), each in input order: :class:`SplitPlan` on a list."""
    plan = SplitPlan(cfg, seed, stratify)
    for record in records:
        plan.add(record)
    plan.finish()
    parts: tuple[list[dict], list[dict], list[dict]] = ([], [], [])
    for i, record in enumerate(records):
        parts[plan.side(record, i)].append(record)
    return parts
