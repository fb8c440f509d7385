"""Feedback store invariants: judgements round-trip into training data, and an interrupted
labelling session (Ctrl-C or SIGKILL) never loses an answered judgement."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge.config.schema import DataConfig
from lmforge.data.splits import load_splits
from lmforge.data.feedback import FeedbackStore, Judgement, collect, read_jsonl

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["what is the capital of france", "hello", "is this food good", "what is a bond"]


def fake_sample(prompt: str, k: int) -> list[str]:
    return [f"answer {i} to {prompt}" for i in range(k)]


def test_store_round_trips_and_feeds_training_formats(tmp_path):
    store = FeedbackStore(tmp_path / "fb")
    given = [
        Judgement("q1", ["a1", "b1"], "A", provenance={"model": "m", "annotator": "ann"}),
        Judgement("q2", ["a2", "b2", "c2"], "C"),
        Judgement("q3", ["a3", "b3"], "tie"),
        Judgement("q4", ["a4", "b4"], "both_bad", edit="fixed answer"),
        Judgement("q5", ["only"], "good", mode="rate"),
    ]
    for j in given:
        store.append(j)
    assert store.read() == given
    prefs = read_jsonl(store.preferences)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in prefs] == [
        ("q1", "a1", "b1"), ("q2", "c2", "a2"), ("q2", "c2", "b2"), ("q4", "fixed answer", "a4"), ("q4", "fixed answer", "b4")]
    assert prefs[0]["provenance"] == {"model": "m", "annotator": "ann", "judgement": given[0].id}
    ratings = read_jsonl(store.ratings)
    assert [(r["prompt"], r["completion"], r["label"]) for r in ratings] == [
        ("q4", "a4", "bad"), ("q4", "b4", "bad"), ("q4", "fixed answer", "good"), ("q5", "only", "good")]
    # the files load as lmforge training data as they are
    splits = load_splits(DataConfig(format="preference", train=str(store.preferences), split={"validation": 0.2, "test": 0}), seed=0)
    assert len(splits.train) + len(splits.validation) == 5
    rated = load_splits(DataConfig(format="classification", train=str(store.ratings), split={"validation": 0.25, "test": 0},
                                   columns={"text": "prompt", "text_pair": "completion"}), seed=0)
    assert sorted(r["label"] for r in rated.train + rated.validation) == ["bad", "bad", "good", "good"]


def test_invalid_choice_is_refused():
    with pytest.raises(ValueError):
        Judgement("q", ["a", "b"], "C")
    with pytest.raises(ValueError):
        Judgement("q", ["a"], "meh", mode="rate")


def test_ctrl_c_keeps_answered_judgements_and_resume_skips_them(tmp_path):
    store = FeedbackStore(tmp_path)
    replies = iter(["a", "b"])

    def ask(question: str) -> str:
        try:
            return next(replies)
        except StopIteration:
            raise KeyboardInterrupt from None

    with pytest.raises(KeyboardInterrupt):
        collect(PROMPTS, fake_sample, ask, store, say=lambda s: None)
    assert [j.prompt for j in store.read()] == PROMPTS[:2]
    assert [j.choice for j in store.read()] == ["A", "B"]
    sampled = []

    def sample(prompt, k):
        sampled.append(prompt)
        return fake_sample(prompt, k)

    answers = iter(["t", "x"])
    assert collect(PROMPTS, sample, lambda q: next(answers), store, say=lambda s: None) == 2
    assert sampled == PROMPTS[2:]  # already judged prompts are not shown again
    assert [j.choice for j in store.read()] == ["A", "B", "tie", "both_bad"]


def test_rate_mode_and_quit(tmp_path):
    store = FeedbackStore(tmp_path)
    answers = iter(["g", "b", "g", "q"])
    stored = collect(PROMPTS, fake_sample, lambda q: next(answers), store, mode="rate", k=2, say=lambda s: None)
    assert stored == 3
    assert [(r["completion"], r["label"]) for r in read_jsonl(store.ratings)] == [
        (f"answer 0 to {PROMPTS[0]}", "good"), (f"answer 1 to {PROMPTS[0]}", "bad"), (f"answer 0 to {PROMPTS[1]}", "good")]


SESSION = """
import sys, time
from lmforge.data.feedback import FeedbackStore, collect
store = FeedbackStore(sys.argv[1])
count = 0
def ask(question):
    global count
    count += 1
    print(f"asked {count}", flush=True)  # everything before this line was stored
    time.sleep(0.05)
    return "a"
collect([f"prompt {i}" for i in range(10000)], lambda p, k: ["x " + p, "y " + p], ask, store, say=lambda s: None)
"""


def test_sigkill_mid_session_loses_no_judgement(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SESSION, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        asked = 0
        deadline = time.time() + 60
        while asked < 6 and time.time() < deadline:
            line = proc.stdout.readline()
            if line.startswith("asked"):
                asked = int(line.split()[1])
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert asked >= 6
    store = FeedbackStore(tmp_path)
    judged = store.read()
    # question n is asked only after judgement n-1 was stored
    assert len(judged) >= asked - 1
    assert [j.prompt for j in judged] == [f"prompt {i}" for i in range(len(judged))]
    assert len(read_jsonl(store.preferences)) == len(judged)


def test_half_written_last_line_is_ignored(tmp_path):
    store = FeedbackStore(tmp_path)
    store.append(Judgement("q1", ["a", "b"], "A"))
    with open(store.judgements, "a") as fh:
        fh.write('{"prompt": "q2", "compl')
    assert [j.prompt for j in store.read()] == ["q1"]


def test_feedback_cli_on_tiny_model(tiny_llama_dir, tmp_path, monkeypatch):
    from lmforge.cli import feedback

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"question": p}) for p in PROMPTS[:2]) + "\n")
    parser = argparse.ArgumentParser()
    feedback.register(parser.add_subparsers())
    args = parser.parse_args(["feedback", str(tiny_llama_dir), "--prompts", str(prompts), "--field", "question",
                              "--out", str(tmp_path / "out"), "--max-new-tokens", "4", "--annotator", "tester"])
    monkeypatch.setattr("sys.stdin", io.StringIO("b\nx\n"))
    assert args.handler(args) == 0
    judged = FeedbackStore(tmp_path / "out").read()
    assert [j.choice for j in judged] == ["B", "both_bad"]
    assert judged[0].provenance["model"] == str(tiny_llama_dir)
    assert judged[0].provenance["annotator"] == "tester" and len(judged[0].completions) == 2
