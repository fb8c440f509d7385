"""Expected calibration error against hand-computed values."""

from __future__ import annotations

import pytest

from lmforge.evaluate.calibration import calibration_bins, expected_calibration_error


def test_ece_hand_computed_two_bins():
    # confidences 0.9 (correct), 0.8 (wrong), 0.6 (correct), 0.7 (correct)
    probs = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]
    refs = [0, 0, 0, 1]
    # 2 bins: (0, .5] empty; (.5, 1] all 4: acc 3/4, conf (0.9+0.8+0.6+0.7)/4 = 0.75 -> ECE 0
    assert expected_calibration_error(probs, refs, n_bins=2) == pytest.approx(0.0)
    # 10 bins: 0.6 -> bin 5 (acc 1, conf .6), 0.7 -> bin 6 (1, .7), 0.8 -> bin 7 (0, .8), 0.9 -> bin 8 (1, .9)
    # ECE = (0.4 + 0.3 + 0.8 + 0.1) / 4 = 0.4
    assert expected_calibration_error(probs, refs, n_bins=10) == pytest.approx(0.4)


def test_ece_perfect_and_overconfident():
    assert expected_calibration_error([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == pytest.approx(0.0)
    assert expected_calibration_error([[1.0, 0.0], [0.0, 1.0]], [1, 0]) == pytest.approx(1.0)


def test_bins_edges_and_counts():
    bins = calibration_bins([[0.5, 0.5], [1.0, 0.0]], [0, 0], n_bins=2)
    # 0.5 falls in (0, 0.5], 1.0 in (0.5, 1]
    assert [b["count"] for b in bins] == [1, 1]
    assert bins[0]["confidence"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        calibration_bins([[0.5, 0.5]], [0, 1])
