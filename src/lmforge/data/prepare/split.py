"""Deterministic train/validation/test split: by ratio, stratified by label, grouped by a key.

Order inside a unit (a label stratum, or all records) comes from sha256(seed, index or group
key), so the same records and seed always give the same split, independent of Python's hash
seed. Grouped splits keep every record of one group on one side.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from lmforge.config.prepare import SplitConfig
from lmforge.data.prepare.fields import where
from lmforge.errors import UserError


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).hexdigest()


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


def _units(records: list[dict], cfg: SplitConfig, stratify: bool) -> list[list[list[int]]]:
    """Strata (by label when stratified), each a list of groups (lists of record indices)."""
    strata: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(records):
        if cfg.group_by is not None:
            if cfg.group_by not in r:
                raise UserError(
                    f"split.group_by: record has no field '{cfg.group_by}'",
                    where=where(r),
                    hint="name a field every record has, or remove data.prepare.split.group_by",
                )
            group = str(r[cfg.group_by])
        else:
            group = f"#{i}"
        stratum = str(r.get("label")) if stratify and cfg.group_by is None else ""
        strata[stratum][group].append(i)
    return [list(groups.values()) for _, groups in sorted(strata.items())]


def split_records(records: list[dict], cfg: SplitConfig, seed: int, stratify: bool = False) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, test). Stratifies by ``label`` when ``stratify`` (ignored with group_by)."""
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for groups in _units(records, cfg, stratify):
        ordered = sorted(groups, key=lambda g: _rank(seed, "\x00".join(map(str, g)) if cfg.group_by is None else str(records[g[0]].get(cfg.group_by))))
        n_val, n_test = _cut(len(ordered), cfg.validation, cfg.test)
        for pos, group in enumerate(ordered):
            side = 1 if pos < n_val else 2 if pos < n_val + n_test else 0
            parts[side].extend(group)
    return tuple([records[i] for i in sorted(idx)] for idx in parts)  # type: ignore[return-value]
