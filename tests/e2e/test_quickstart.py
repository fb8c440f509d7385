"""The demo path on the real assets (SmolLM2 cut to 2 layers to stay fast)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import run_cli


@pytest.mark.slow
def test_quickstart_runs_on_real_assets(tmp_path):
    proc = run_cli(
        "quickstart", f"run.output_dir={tmp_path / 'qs'}", "model.overrides={num_hidden_layers: 2}",
        "train.max_steps=2", "train.eval_every=2", "eval.max_examples=4", "eval.generations=1",
        "eval.max_new_tokens=4", "data.max_length=64", "train.batch_size=2",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "qs" / "results.json").read_text())
    assert results["before"]["eval_loss"] > 0 and results["after"]["eval_loss"] > 0
    assert results["data"]["train_examples"] > 500  # FiQA has 648 pairs
    assert (tmp_path / "qs" / "export" / "adapter" / "adapter_config.json").exists()
