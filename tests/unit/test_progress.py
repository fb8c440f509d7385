"""Progress of a run's phases outside the training steps: bars on stderr inside a named phase only, the
phase's work in status.json, generation counting its whole token budget, and a run showing every phase."""

from __future__ import annotations

import json

import torch

from lmforge import progress
from lmforge.status import StatusWriter, read_status, tracking
from tests.unit.test_status import Clock


def test_outside_a_phase_nothing_is_shown(capfd):
    with progress.bar(5, "examples", "evaluation") as tick:
        tick(5)
    assert progress.current() is None
    assert capfd.readouterr().err == ""


def test_a_bar_in_a_phase_is_labelled_and_the_phase_ends_with_its_block(capfd):
    with progress.phase("before"):
        assert progress.current() == "before"
        with progress.phase("parity"):
            assert progress.current() == "parity"
        assert progress.current() == "before"
        with progress.bar(4, "examples", "evaluation") as tick:
            tick(2)
            tick(2)
    assert progress.current() is None
    err = capfd.readouterr().err
    assert "before: evaluation" in err and "examples" in err


def test_a_part_of_a_phase_is_named_within_it_and_nothing_outside_one():
    with progress.within("fine-tuned"):
        assert progress.current() is None
    with progress.phase("compare"), progress.within("fine-tuned"):
        assert progress.current() == "compare: fine-tuned"


def test_the_work_of_a_phase_goes_to_status_json_with_an_eta(tmp_path):
    clock = Clock()
    writer = StatusWriter(tmp_path, clock=clock, heartbeat_s=3600)
    writer.phase("before-eval")
    writer.work("evaluation", 0, 32, "examples")
    assert read_status(tmp_path)["work"] == {"what": "evaluation", "done": 0, "total": 32, "unit": "examples",
                                             "eta_s": None}
    clock.t += 10.0
    writer.work("evaluation", 8, 32, "examples")  # 10 s for 8 -> 24 left = 30 s
    assert read_status(tmp_path)["work"]["eta_s"] == 30.0
    clock.t += 0.1
    writer.work("evaluation", 9, 32, "examples")  # within 0.5 s of the last write: not written yet
    assert read_status(tmp_path)["work"]["done"] == 8
    writer.work("evaluation", 32, 32, "examples")  # the end is always written
    assert read_status(tmp_path)["work"]["done"] == 32
    writer.work(None)
    assert read_status(tmp_path)["work"] is None
    writer.work("answers", 0, 10, "tokens")
    writer.phase("after-eval")  # a new phase starts without the previous phase's work
    assert read_status(tmp_path)["work"] is None
    writer.close()


def test_bars_report_through_the_active_tracker(tmp_path):
    with tracking(tmp_path):
        from lmforge import status

        status.set_phase("before-eval")
        with progress.phase("before"), progress.bar(3, "examples", "evaluation") as tick:
            tick(3)
            assert read_status(tmp_path)["work"]["done"] == 3
        assert read_status(tmp_path)["work"] is None


def test_generation_counts_its_whole_token_budget_and_keeps_the_callers_callbacks(tmp_path, capfd):
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmforge.model.generate import generate_tokens

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    prompts = [[1, 2, 3], [4, 5], [6]]
    limits = [5, 3, 4]
    seen: list[tuple] = []
    tokens_seen: list[int] = []

    def on_finish(row, result):  # runs after the bar counted the row's unused budget
        seen.append((row, read_status(tmp_path)["work"]))

    # every token id but 7 stops a row: rows end early, and the bar must still end full
    stops = [t for t in range(64) if t != 7]
    with tracking(tmp_path):
        from lmforge import status

        status.set_phase("before-eval")
        with progress.phase("before"):
            results = generate_tokens(model, prompts, max_new_tokens=limits, stop_ids=stops, batch_size=2,
                                      on_token=lambda row, token: tokens_seen.append(token), on_finish=on_finish)
        plain = generate_tokens(model, prompts, max_new_tokens=limits, stop_ids=stops, batch_size=2)
    assert [r.tokens for r in results] == [r.tokens for r in plain]  # the bar changes nothing decoded
    assert sorted(tokens_seen) == sorted(t for r in results for t in r.tokens)
    assert sorted(row for row, _ in seen) == [0, 1, 2]
    last = seen[-1][1]
    assert last["what"] == "answers" and last["unit"] == "tokens" and last["done"] == last["total"] == sum(limits)
    assert "before: answers" in capfd.readouterr().err


def test_a_run_shows_every_phase(tmp_path, tiny_llama_dir, capfd):
    from lmforge.config import parse_config
    from lmforge.pipeline import run_train

    rows = [{"question": f"what is item {i}?", "answer": f"answer {i % 3}."} for i in range(16)]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = parse_config({
        "run": {"name": "shown", "output_dir": str(tmp_path / "runs"), "seed": 1},
        "model": {"name": str(tiny_llama_dir)},
        "data": {"format": "instruction", "train": str(data), "columns": {"instruction": "question", "output": "answer"},
                 "max_length": 32, "split": {"validation": 0.25, "test": 0.25}},
        "method": {"name": "lora", "r": 2, "alpha": 4, "dropout": 0.0},
        "train": {"max_steps": 2, "batch_size": 4, "eval_every": 2},
        "runtime": {"precision": "fp32"},
        "eval": {"generations": 1, "max_new_tokens": 4},
    })
    run_train(config, say=lambda _m: None)
    err = capfd.readouterr().err
    for label in ("before: evaluation", "before: answers", "before, validation: evaluation", "validation: evaluation",
                  "after: evaluation", "after: answers", "parity: answers", "drift baseline: input statistics"):
        assert label in err, label
    final = read_status(config.run.dir)
    assert final["phase"] == "done" and final["work"] is None
