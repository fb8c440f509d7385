"""Multi-task data: loading each task with its own section, and mixing strategies (proportions, determinism)."""

import json

import pytest

from lmforge.config.schema import DataConfig
from lmforge.pipeline.multitask import task_sections
from lmforge.data.tasks import (add_task_ids, load_tasks, merge_splits, mix_features, mixing_probabilities, tag_task,
                                task_counts)


def features(n: int, task: int) -> list[dict]:
    return tag_task([{"input_ids": [task, i], "label": 0} for i in range(n)], task)


BIG, SMALL = features(900, 0), features(100, 1)


def test_concatenate_takes_each_task_times_its_weight():
    mixed = mix_features([BIG, SMALL], [1.0, 1.0], "concatenate", seed=0)
    assert task_counts(mixed, 2) == [900, 100]
    assert sorted(f["input_ids"][1] for f in mixed if f["task"] == 1) == list(range(100))  # each example once
    up = mix_features([BIG, SMALL], [0.5, 3.0], "concatenate", seed=0)
    assert task_counts(up, 2) == [450, 300]
    ids = [f["input_ids"][1] for f in up if f["task"] == 1]
    assert all(ids.count(i) == 3 for i in range(100))  # up-sampling cycles through every example


def test_interleave_draws_tasks_by_normalised_weight():
    mixed = mix_features([BIG, SMALL], [1.0, 3.0], "interleave", seed=1)
    assert len(mixed) == 1000  # the epoch budget: every task's size summed
    share = task_counts(mixed, 2)[1] / len(mixed)
    assert share == pytest.approx(0.75, abs=0.04)  # ~5 standard deviations (sd ~0.014)


def test_temperature_flattens_sizes():
    probs = mixing_probabilities([900, 100], [1.0, 1.0], "temperature", temperature=2.0)
    assert probs[1] == pytest.approx(10 / (30 + 10))  # sqrt(100) / (sqrt(900) + sqrt(100))
    assert mixing_probabilities([900, 100], [1, 1], "temperature", temperature=1.0)[1] == pytest.approx(0.1)
    assert mixing_probabilities([900, 100], [1, 1], "temperature", temperature=1000.0)[1] == pytest.approx(0.5, abs=0.01)
    mixed = mix_features([BIG, SMALL], [1.0, 1.0], "temperature", seed=2, temperature=2.0)
    assert task_counts(mixed, 2)[1] / len(mixed) == pytest.approx(0.25, abs=0.04)


@pytest.mark.parametrize("strategy", ["concatenate", "interleave", "temperature"])
def test_mixing_is_deterministic_in_the_seed(strategy):
    first = mix_features([BIG, SMALL], [1.0, 2.0], strategy, seed=7)
    assert first == mix_features([BIG, SMALL], [1.0, 2.0], strategy, seed=7)
    assert first != mix_features([BIG, SMALL], [1.0, 2.0], strategy, seed=8)


def test_empty_task_is_skipped():
    mixed = mix_features([BIG[:10], []], [1.0, 5.0], "interleave", seed=0)
    assert task_counts(mixed, 2) == [10, 0]


def test_add_task_ids_adds_a_row_tensor():
    batch = add_task_ids({"input_ids": None}, [BIG[0], SMALL[0], BIG[1]])
    assert batch["task"].tolist() == [0, 1, 0] and str(batch["task"].dtype) == "torch.int64"


def test_load_tasks_reads_each_task_with_its_own_section(tmp_path):
    (tmp_path / "a.csv").write_text("review,score\n" + "".join(f"good {i},great\nbad {i},other\n" for i in range(10)))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": f"q{i}", "label": "yes" if i % 2 else "no"}) + "\n"
                                              for i in range(8)))
    data = DataConfig.model_validate({"format": "classification", "split": {"validation": 0.2, "test": 0.2}, "tasks": [
        {"name": "sent", "train": str(tmp_path / "a.csv"), "columns": {"text": "review", "label": "score"}},
        {"name": "qa", "train": str(tmp_path / "b.jsonl"), "weight": 2}]})
    sent, qa = load_tasks(data.tasks, task_sections(data), seed=0)
    assert (sent.name, qa.name, qa.weight) == ("sent", "qa", 2.0)
    assert (len(sent.splits.train), len(sent.splits.validation), len(sent.splits.test)) == (12, 4, 4)
    assert {r["label"] for r in sent.splits.train} == {"great", "other"}
    assert {r["label"] for r in qa.splits.train} == {"yes", "no"} and len(qa.splits.test) == 2
    merged = merge_splits([sent, qa])
    assert len(merged.train) == 12 + len(qa.splits.train) and merged.test == sent.splits.test + qa.splits.test
    assert merged.validation == sent.splits.validation + qa.splits.validation
    assert [p.name for p in merged.files] == ["a.csv", "b.jsonl"]
