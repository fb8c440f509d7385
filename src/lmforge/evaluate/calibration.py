"""Calibration of a classifier's confidence: expected calibration error (ECE) and its bins.

ECE (Naeini et al. 2015; Guo et al. 2017) with equal-width confidence bins: each example's
confidence is its top class probability; bins are (0, 1/M], (1/M, 2/M], ..., and
ECE = sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|. A confidence of exactly 0 falls
in the first bin.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def calibration_bins(
    probabilities: Sequence[Sequence[float]], references: Sequence[int], n_bins: int = 10
) -> list[dict]:
    """Per-bin statistics for a reliability diagram.

    Args:
        probabilities: shape (n, num_classes), each row a probability distribution.
        references: n gold class indices.
        n_bins: number of equal-width bins over [0, 1].
    Returns:
        one dict per bin: {"low", "high", "count", "accuracy", "confidence"} (accuracy and
        confidence are 0.0 for empty bins).
    """
    probs = np.asarray(probabilities, dtype=float)
    refs = np.asarray(references, dtype=int)
    if probs.ndim != 2 or probs.shape[0] != refs.shape[0]:
        raise ValueError(f"probabilities {probs.shape} do not match {refs.shape[0]} references")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == refs).astype(float)
    # ceil(conf * M) - 1 puts conf in (k/M, (k+1)/M] into bin k; conf == 0 goes to bin 0.
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins = []
    for k in range(n_bins):
        mask = index == k
        count = int(mask.sum())
        bins.append(
            {
                "low": k / n_bins,
                "high": (k + 1) / n_bins,
                "count": count,
                "accuracy": float(correct[mask].mean()) if count else 0.0,
                "confidence": float(confidence[mask].mean()) if count else 0.0,
            }
        )
    return bins


def expected_calibration_error(
    probabilities: Sequence[Sequence[float]], references: Sequence[int], n_bins: int = 10
) -> float:
    """ECE in [0, 1] with ``n_bins`` equal-width bins (0 = perfectly calibrated)."""
    bins = calibration_bins(probabilities, references, n_bins)
    n = sum(b["count"] for b in bins)
    if n == 0:
        return 0.0
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins))
