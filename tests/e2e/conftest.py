"""Fixtures for running the real CLI on tiny models and tiny data files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QA = [
    ("what is the capital of france?", "paris."),
    ("what is a bond?", "a loan to a company."),
    ("what is a stock?", "a share of a company."),
    ("is the interest rate good?", "yes, it is good."),
    ("what is credit?", "money you borrow."),
    ("how do i buy a fund?", "buy it with a bank."),
]


@pytest.fixture
def qa_file(tmp_path) -> Path:
    path = tmp_path / "qa.jsonl"
    rows = [{"question": q, "answer": a} for q, a in QA * 4]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def reviews_file(tmp_path) -> Path:
    path = tmp_path / "reviews.csv"
    lines = ["review,score"]
    for i in range(24):
        lines.append(f"great food i love it {i},great" if i % 2 else f"bad taste i hate it {i},other")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "lmforge.cli.main", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )


TRAIN = "{max_steps: 6, batch_size: 4, lr: 0.01, eval_every: 3, log_every: 2}"
RUNTIME = "{precision: fp32}"
SPLIT = "{validation: 0.2, test: 0.2}"  # qa_file's 6 distinct questions: 4 train, 1 validation, 1 test
WIDE_TEST = "{validation: 0.2, test: 0.5}"  # 2 train, 1 validation, 3 test questions (distinct samples)
EVAL = "{generations: 2, max_new_tokens: 8}"


def lora_config(tmp_path: Path, model_dir, data, extra: str = "", *, train: str = TRAIN, evaluate: str = EVAL,
                runtime: str = RUNTIME, split: str = SPLIT) -> Path:
    """An instruction-tuning LoRA run on the tiny Llama writing to <tmp_path>/run."""
    return write_config(tmp_path, f"""
run: {{name: tiny, output_dir: {tmp_path / 'run'}}}
model: {{name: {model_dir}}}
data:
  format: instruction
  train: {data}
  columns: {{instruction: question, output: answer}}
  split: {split}
  max_length: 64
method: {{name: lora, r: 4, alpha: 8, dropout: 0.0}}
train: {train}
runtime: {runtime}
eval: {evaluate}
{extra}
""")
