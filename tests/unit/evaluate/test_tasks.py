"""Per-task evaluation (overall + task/<name>/<metric>) and how the report shows it."""

import pytest
import torch

from lmforge.config.schema import ModelConfig
from lmforge.data.tasks import add_task_ids, tag_task
from lmforge.evaluate.run import evaluate
from lmforge.evaluate.report import comparison_rows, render_report
from lmforge.evaluate.tasks import evaluate_tasks
from lmforge.model.multihead import build_multihead, single_head
from lmforge.model import load_model
from lmforge.model.task import TaskInfo
from lmforge.objectives import build_objective
from lmforge.objectives.registry import get_objective_spec


def objective(name: str):
    return build_objective(name, get_objective_spec(name).params())


def test_classification_metrics_per_task_and_overall(tiny_bert_dir):
    torch.manual_seed(0)
    task = TaskInfo("sequence_classification", 3, None, (("sent", ("great", "other")), ("topic", ("a", "b", "c"))))
    model = build_multihead(load_model(ModelConfig(name=str(tiny_bert_dir)), single_head(task)), task)
    obj = objective("classification")
    feats = (tag_task([{"input_ids": [2, 10 + i, 3], "label": i % 2} for i in range(6)], 0)
             + tag_task([{"input_ids": [2, 20 + i, 21, 3], "label": i % 3} for i in range(9)], 1))

    def collate(fs):
        return add_task_ids(obj.collate(fs, None), fs)

    m = evaluate_tasks(obj, model, feats, collate, 4, [("sent", ["great", "other"]), ("topic", ["a", "b", "c"])],
                       per_example=True)
    sent, topic = m["tasks"]["sent"], m["tasks"]["topic"]
    assert sent["labels"] == ["great", "other"] and topic["labels"] == ["a", "b", "c"]
    assert len(topic["confusion_matrix"]) == 3 and sum(map(sum, topic["confusion_matrix"])) == 9
    assert m["task/sent/accuracy"] == sent["accuracy"] and m["task/topic/f1_macro"] == topic["f1_macro"]
    assert m["accuracy"] == pytest.approx((6 * sent["accuracy"] + 9 * topic["accuracy"]) / 15)
    assert m["f1_macro"] == pytest.approx((sent["f1_macro"] + topic["f1_macro"]) / 2)
    assert m["eval_loss"] == pytest.approx((6 * sent["eval_loss"] + 9 * topic["eval_loss"]) / 15)
    assert m["eval_examples"] == 15 and len(m["per_example"]["correct"]) == 15
    assert "confusion_matrix" not in m  # no cross-task confusion matrix at the top level
    # batching does not change the numbers
    again = evaluate_tasks(obj, model, feats, collate, 1, [("sent", ["great", "other"]), ("topic", ["a", "b", "c"])])
    assert again["task/topic/eval_loss"] == pytest.approx(m["task/topic/eval_loss"], rel=1e-5)


def test_causal_lm_loss_per_task_matches_evaluating_each_subset(tiny_llama_dir):
    torch.manual_seed(0)
    model = load_model(ModelConfig(name=str(tiny_llama_dir)), TaskInfo("causal_lm"))
    obj = objective("causal_lm")
    first = [{"input_ids": [5, 6, 7, 8], "labels": [-100, 6, 7, 8]}, {"input_ids": [9, 10, 11], "labels": [-100, -100, 11]}]
    second = [{"input_ids": [12, 13, 14, 15, 16], "labels": [-100, 13, 14, 15, 16]}]
    feats = tag_task(first, 0) + tag_task(second, 1)

    def collate(fs):
        return obj.collate(fs, None)

    m = evaluate_tasks(obj, model, feats, collate, 2, [("finance", None), ("general", None)])
    assert m["task/finance/eval_loss"] == pytest.approx(evaluate(obj, model, first, collate, 2)["eval_loss"], rel=1e-5)
    assert m["task/general/eval_loss"] == pytest.approx(evaluate(obj, model, second, collate, 2)["eval_loss"], rel=1e-5)
    assert m["eval_loss"] == pytest.approx(evaluate(obj, model, first + second, collate, 2)["eval_loss"], rel=1e-5)
    assert m["task/general/perplexity"] == pytest.approx(torch.tensor(m["task/general/eval_loss"]).exp().item(), rel=1e-5)
    assert "task/general/accuracy" not in m


def test_report_shows_per_task_rows_and_class_tables():
    task = {"accuracy": 0.5, "per_class": {"x": {"precision": 1.0, "recall": 0.5, "f1": 0.67, "support": 2}},
            "confusion_matrix": [[1]], "labels": ["x"]}
    before = {"eval_loss": 2.0, "task/a/perplexity": 9.0, "task/a/accuracy": 0.4, "tasks": {"a": task}}
    after = {"eval_loss": 1.0, "task/a/perplexity": 3.0, "task/a/accuracy": 0.5, "tasks": {"a": task}}
    rows = {r[0]: r[3] for r in comparison_rows(before, after)}
    assert "better" in rows["task/a/perplexity"] and "better" in rows["task/a/accuracy"]
    text = render_report({"model": "m", "before": before, "after": after})
    assert "| task/a/accuracy | 0.4000 | 0.5000 |" in text
    assert "## Per class (after, task a)" in text
