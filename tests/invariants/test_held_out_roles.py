"""The test split chooses nothing: during training only validation examples are evaluated, and two runs
that differ only in their test data pick the same checkpoint, stop at the same step and end with the
same weights, while their reported numbers differ (they come from the test data).

Exact comparisons: the two runs execute the same operations on the same inputs in the same order on
one machine, so every float agrees bit for bit (nothing the test data feeds can reach them).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

QUESTIONS = [f"what is item {i}?" for i in range(16)]


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    return path


def _config(tmp_path: Path, model_dir: Path, test_file: Path, name: str):
    from lmforge.config import parse_config

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    train = _write(data / "train.jsonl", [(q, f"answer {i % 4}.") for i, q in enumerate(QUESTIONS[:12])])
    validation = _write(data / "validation.jsonl", [(q, f"answer {i % 4}.") for i, q in enumerate(QUESTIONS[12:])])
    return parse_config({
        "run": {"name": name, "output_dir": str(tmp_path / name), "seed": 3},
        "model": {"name": str(model_dir)},
        "data": {"format": "instruction", "train": str(train), "validation": str(validation), "test": str(test_file),
                 "columns": {"instruction": "question", "output": "answer"}, "max_length": 32},
        "method": {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"max_steps": 12, "batch_size": 4, "lr": 0.05, "eval_every": 2, "log_every": 2,
                  "early_stopping": {"patience": 2}},
        "runtime": {"precision": "fp32"},
        "eval": {"generations": 0},
    })


def _from_the_loop() -> bool:
    return any(Path(frame.filename).as_posix().endswith("lmforge/train/loop.py") for frame in inspect.stack())


def _evals(run: Path) -> list[dict]:
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in e.items() if k == "step" or k.startswith("eval_")} for e in events if e.get("event") == "eval"]


def test_the_test_split_never_reaches_checkpoint_choice(tmp_path, tiny_llama_dir, monkeypatch):
    from lmforge.pipeline import run_train
    from lmforge.pipeline.session import Session

    seen: list[tuple[str, bool]] = []  # (part evaluated, called from inside the training loop)
    evaluate = Session.evaluate

    def spy(self, model=None, per_example=False, part=None):
        seen.append((part or self.reported, _from_the_loop()))
        return evaluate(self, model, per_example=per_example, part=part)

    monkeypatch.setattr(Session, "evaluate", spy)
    tests = {"a": _write(tmp_path / "test-a.jsonl", [(f"name a colour, {i}", "red.") for i in range(4)]),
             "b": _write(tmp_path / "test-b.jsonl", [(f"how far is town {i}?", "very far away from here.") for i in range(4)])}
    reports = {name: run_train(_config(tmp_path, tiny_llama_dir, path, name), say=lambda _t: None)
               for name, path in tests.items()}

    during = [part for part, in_loop in seen if in_loop]
    assert during and set(during) == {"validation"}  # the loop evaluated, and only on validation
    assert "test" in {part for part, in_loop in seen if not in_loop}  # before / after come from test

    runs = {name: tmp_path / name for name in tests}
    assert _evals(runs["a"]) == _evals(runs["b"]) and len(_evals(runs["a"])) >= 2
    assert reports["a"]["train"]["best_step"] == reports["b"]["train"]["best_step"]
    weights = [load_file(runs[n] / "export" / "adapter" / "adapter_model.safetensors") for n in tests]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert reports["a"]["after"]["eval_loss"] != reports["b"]["after"]["eval_loss"]  # reported: the test data
    for name in tests:
        results = json.loads((runs[name] / "results.json").read_text())
        assert results["data"]["reported_on"] == "test" and results["data"]["selected_on"] == "validation"
