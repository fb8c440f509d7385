"""`lmforge train --nproc 2`: two processes through torchrun (gloo on CPU), one set of outputs."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import lora_config, run_cli


@pytest.mark.slow
def test_two_processes_train_and_only_rank0_writes(tmp_path, tiny_llama_dir, qa_file):
    cfg = lora_config(tmp_path, tiny_llama_dir, qa_file)
    proc = run_cli("train", str(cfg), "--nproc", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["train"]["steps"] == 6
    steps = [e["step"] for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in e]
    assert steps == sorted(set(steps))  # one writer: no duplicated log lines
    assert (run / "export" / "merged" / "parity.json").exists()
