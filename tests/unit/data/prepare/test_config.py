"""The prepare section of the data config: strict, frozen, reachable from DataConfig."""

from __future__ import annotations

import pydantic
import pytest

from lmforge.config.schema import SplitConfig

from lmforge.config.prepare import PrepareConfig
from lmforge.config.schema import DataConfig


def test_data_config_accepts_a_prepare_section():
    cfg = DataConfig(format="classification", train="d.csv", prepare={"dedup": {"threshold": 0.9}, "pii": {"action": "drop"}})
    assert cfg.prepare.dedup.threshold == 0.9 and cfg.prepare.pii.action == "drop"
    assert DataConfig(format="text", train="d.txt").prepare is None


def test_unknown_keys_and_bad_values_fail():
    with pytest.raises(pydantic.ValidationError):
        PrepareConfig(dedup={"treshold": 0.9})
    with pytest.raises(pydantic.ValidationError):
        PrepareConfig(pii={"types": ["EMAIL", "SHOE_SIZE"]})
    with pytest.raises(pydantic.ValidationError):
        PrepareConfig(split={"validation": 0.1})  # the split is data.split, for every run
    with pytest.raises(pydantic.ValidationError):
        SplitConfig(validation=0.6, test=0.5)


def test_frozen():
    cfg = PrepareConfig()
    with pytest.raises(pydantic.ValidationError):
        cfg.dedup = None
