"""Exact and near-duplicate detection (MinHash signatures + banded LSH), seeded and streaming.

Texts are compared after :func:`dedup_key` (lower case, whitespace collapsed). Near duplicates:
``shingle``-byte windows (character n-grams for ASCII) hashed polynomially, ``num_perm`` multiply-shift hash functions drawn
from ``numpy.random.default_rng(seed)``; the signature is the per-function minimum. Signatures
are cut into ``bands`` x ``rows`` (chosen so the LSH S-curve crosses ``threshold``); texts that
share a band are candidates, and a candidate is a duplicate when the share of equal signature
values (an estimate of Jaccard similarity) is at least ``threshold``. Reference: Broder 1997;
Leskovec, Rajaraman, Ullman, "Mining of Massive Datasets", ch. 3.
"""

from __future__ import annotations

import hashlib

import numpy as np

from lmforge.data.prepare.store import DiskStore, KeyTable

_BASE = np.uint64(1099511628211)  # FNV-1a 64-bit prime


def dedup_key(text: str) -> str:
    """Lower-cased text with whitespace runs collapsed: what "the same text" means here."""
    return " ".join(text.lower().split())


def exact_hash(text: str) -> str:
    """sha256 hex digest of :func:`dedup_key` of ``text``."""
    return hashlib.sha256(dedup_key(text).encode("utf-8")).hexdigest()


def exact_key(text: str) -> int:
    """64-bit integer form of :func:`exact_hash` (first 8 bytes): compact state for streaming."""
    return int.from_bytes(hashlib.sha256(dedup_key(text).encode("utf-8")).digest()[:8], "little")


def lsh_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows), bands * rows <= num_perm, S-curve midpoint near ``threshold - 0.15``.

    The midpoint sits below the threshold so pairs at the threshold are found with high
    probability; every candidate is verified against the threshold, so extra candidates cost
    only time.
    """
    target = max(0.05, threshold - 0.15)
    best = (num_perm, 1)
    best_gap = float("inf")
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        gap = abs((1.0 / bands) ** (1.0 / rows) - target)
        if gap < best_gap:
            best, best_gap = (bands, rows), gap
    return best


class MinHasher:
    """MinHash signatures of texts; the same (num_perm, shingle, seed) gives the same signatures."""

    def __init__(self, num_perm: int = 128, shingle: int = 5, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.shingle = shingle
        # Odd multipliers for multiply-shift hashing of 32-bit keys into 32-bit values.
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def shingles(self, text: str) -> np.ndarray:
        """64-bit polynomial hashes of the distinct ``shingle``-byte windows of :func:`dedup_key` (UTF-8).

        Vectorised: ``shingle`` numpy passes over the byte array. Texts shorter than a shingle
        hash as one window. Returns a non-empty uint64 array.
        """
        raw = np.frombuffer(dedup_key(text).encode("utf-8"), dtype=np.uint8).astype(np.uint64)
        k = min(self.shingle, max(1, raw.size))
        if raw.size == 0:
            return np.zeros(1, dtype=np.uint64)
        width = raw.size - k + 1
        hashed = np.zeros(width, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(k):
                hashed = hashed * _BASE + raw[j : j + width] + np.uint64(1)
        return np.unique(hashed)

    def signature(self, text: str) -> np.ndarray:
        """uint32 array of length num_perm."""
        x = self.shingles(text)[:, None]
        with np.errstate(over="ignore"):
            hashed = (self._a[None, :] * x + self._b[None, :]) >> np.uint64(32)
        return hashed.min(axis=0).astype(np.uint32)


class NearDuplicateIndex:
    """Banded LSH index; :meth:`find` returns the id of an indexed near duplicate or None.

    Compact for streaming: band values are folded to one 64-bit key each and kept in a
    :class:`~lmforge.data.prepare.store.KeyTable` (16 bytes per band per indexed text); the
    signatures themselves go to a :class:`~lmforge.data.prepare.store.DiskStore` and are read
    back only to verify a candidate. RAM per indexed text: about ``16 * bands + 8`` bytes.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, seed: int = 0, folder: str | None = None):
        self.threshold = threshold
        self.hasher = MinHasher(num_perm, shingle, seed)
        self.bands, self.rows = lsh_bands(num_perm, threshold)
        rng = np.random.default_rng([seed, 1])
        self._mult = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)
        self._salt = rng.integers(0, 2**63, size=self.bands, dtype=np.uint64)
        self._table = KeyTable()
        self._store = DiskStore(folder)
        self._width = num_perm * 4

    def __len__(self) -> int:
        return len(self._store)

    def band_keys(self, sig: np.ndarray) -> list[int]:
        """One 64-bit key per band: a seeded polynomial fold of the band's rows, salted by band."""
        block = sig[: self.bands * self.rows].astype(np.uint64).reshape(self.bands, self.rows)
        with np.errstate(over="ignore"):
            folded = (block * self._mult[None, :]).sum(axis=1, dtype=np.uint64) ^ self._salt
            folded = (folded ^ (folded >> np.uint64(29))) * _BASE
        return folded.tolist()

    def find(self, text: str, sig: np.ndarray | None = None) -> int | None:
        """Id of the most similar indexed text with estimated Jaccard >= threshold, else None."""
        sig = self.hasher.signature(text) if sig is None else sig
        found = self._table.get(self.band_keys(sig))
        if not found:
            return None
        rows = np.frombuffer(b"".join(self._store.get(i) for i in found), dtype=np.uint32).reshape(len(found), -1)
        sims = (rows[:, : sig.size] == sig[None, :]).mean(axis=1)
        ids = rows[:, sig.size :].copy().view(np.int64).ravel()
        ok = np.flatnonzero(sims >= self.threshold)
        if ok.size == 0:
            return None
        best = max(ok.tolist(), key=lambda j: (sims[j], -ids[j]))
        return int(ids[best])

    def stored_signature(self, internal: int) -> np.ndarray:
        """The signature indexed ``internal``-th (0 = first :meth:`add`), read back from disk."""
        return np.frombuffer(self._store.get(internal)[: self._width], dtype=np.uint32)

    def add(self, item_id: int, text: str, sig: np.ndarray | None = None) -> None:
        """Index ``text`` under ``item_id``."""
        sig = self.hasher.signature(text) if sig is None else sig
        internal = self._store.append(sig.astype(np.uint32).tobytes() + int(item_id).to_bytes(8, "little", signed=True))
        self._table.add(self.band_keys(sig), internal)
