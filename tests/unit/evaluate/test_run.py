"""evaluate(): batching, token weighting, eval mode and no-grad, perplexity and classification metrics."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.evaluate.metrics import classification_metrics
from lmforge.evaluate.run import evaluate
from lmforge.objectives.base import EvalOutput, ObjectiveBase


class TokenLoss(ObjectiveBase):
    """A tiny causal objective: summed next-token CE over all non-pad tokens; records what it saw."""

    def __init__(self, metrics=("eval_loss", "perplexity")):
        self.spec = SimpleNamespace(metrics=metrics)
        self.seen = []

    def eval_step(self, model, batch):
        self.seen.append((model.training, torch.is_grad_enabled(), batch["input_ids"].device.type))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        total = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        return EvalOutput(loss_total=float(total), count=int((labels != -100).sum()))


def collate(features):
    width = max(len(f) for f in features)
    ids = torch.tensor([f + [0] * (width - len(f)) for f in features])
    mask = torch.tensor([[1] * len(f) + [0] * (width - len(f)) for f in features])
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


FEATURES = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16], [17, 18, 19]]


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)


def _reference_loss(model, features):
    total, count = 0.0, 0
    with torch.no_grad():
        for f in features:
            ids = torch.tensor([f])
            logits = model(input_ids=ids).logits[0, :-1]
            total += float(F.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += len(f) - 1
    return total / count


def test_eval_loss_is_token_weighted_and_batch_size_free(llama):
    expected = _reference_loss(llama, FEATURES)
    for batch_size in (1, 3, 4):
        m = evaluate(TokenLoss(), llama, FEATURES, collate, batch_size)
        assert m["eval_loss"] == pytest.approx(expected, rel=1e-5)
        assert m["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
        assert m["eval_examples"] == 4
    json.dumps(m)


def test_runs_in_eval_mode_without_grad_and_restores_mode(llama):
    objective = TokenLoss()
    llama.train()
    evaluate(objective, llama, FEATURES, collate, 2)
    assert objective.seen == [(False, False, "cpu")] * 2
    assert llama.training
    llama.eval()
    evaluate(objective, llama, FEATURES, collate, 2)
    assert not llama.training


def test_perplexity_only_when_the_objective_reports_it(llama):
    m = evaluate(TokenLoss(metrics=("eval_loss",)), llama, FEATURES, collate, 4)
    assert "perplexity" not in m and "eval_loss" in m


def test_no_features_is_a_user_error(llama):
    with pytest.raises(UserError, match="no held-out examples"):
        evaluate(TokenLoss(), llama, [], collate, 4)


class Classify(ObjectiveBase):
    def __init__(self):
        super().__init__(SimpleNamespace(metrics=("eval_loss", "accuracy", "f1_macro")), None)

    def eval_step(self, model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"]
        return EvalOutput(float(F.cross_entropy(logits, labels, reduction="sum")), int(labels.shape[0]),
                          predictions=logits.argmax(-1).tolist(), references=labels.tolist())


def test_classification_metrics_use_id2label(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=2, id2label={0: "great", 1: "other"}, label2id={"great": 0, "other": 1})
    feats = [([2, 10, 11, 3], 0), ([2, 12, 3], 1), ([2, 13, 14, 15, 3], 1)]

    def collate_cls(batch):
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [0] * (width - len(i)) for i, _ in batch])
        return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([y for _, y in batch])}

    m = evaluate(Classify(), model, feats, collate_cls, 2)
    with torch.no_grad():
        preds = [int(model(**{k: v for k, v in collate_cls([f]).items() if k != "labels"}).logits.argmax()) for f in feats]
    gold = [0, 1, 1]
    assert m["accuracy"] == pytest.approx(sum(p == g for p, g in zip(preds, gold)) / 3)
    assert set(m["per_class"]) == {"great", "other"} and m["labels"] == ["great", "other"]
    assert sum(map(sum, m["confusion_matrix"])) == 3 and "perplexity" not in m
    json.dumps(m)


def test_per_example_losses_and_counts_match_each_feature(llama):
    batched = evaluate(TokenLoss(), llama, FEATURES, collate, 4)
    m = evaluate(TokenLoss(), llama, FEATURES, collate, 4, per_example=True)
    assert "per_example" not in batched
    per = m["per_example"]
    assert per["count"] == [len(f) - 1 for f in FEATURES] and "correct" not in per
    for loss, feature in zip(per["loss"], FEATURES):
        assert loss == pytest.approx(_reference_loss(llama, [feature]), rel=1e-5)
    weighted = sum(l * c for l, c in zip(per["loss"], per["count"])) / sum(per["count"])
    assert m["eval_loss"] == pytest.approx(weighted, rel=1e-6) == pytest.approx(batched["eval_loss"], rel=1e-5)
    json.dumps(m)


def test_per_example_correct_for_classifiers(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    feats = [([2, 10, 11, 3], 0), ([2, 12, 3], 1), ([2, 13, 14, 15, 3], 1)]

    def collate_cls(batch):
        ids = torch.tensor([i + [0] * (max(len(x) for x, _ in batch) - len(i)) for i, _ in batch])
        return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([y for _, y in batch])}

    m = evaluate(Classify(), model, feats, collate_cls, 2, per_example=True)
    assert len(m["per_example"]["correct"]) == 3 and set(m["per_example"]["correct"]) <= {0.0, 1.0}
    assert sum(m["per_example"]["correct"]) / 3 == pytest.approx(m["accuracy"])


def test_batched_per_example_values_equal_one_by_one_for_the_causal_lm_objective(llama):
    from lmforge.objectives import build_objective
    from lmforge.objectives.registry import get_objective_spec

    objective = build_objective("causal_lm", get_objective_spec("causal_lm").params())
    calls = []
    objective.eval_step = (lambda step: lambda model, batch: calls.append(len(batch["input_ids"])) or step(model, batch))(
        objective.eval_step)
    m = evaluate(objective, llama, FEATURES, collate, 4, per_example=True)
    assert calls == [4]  # one batched forward, not one per example
    per = m["per_example"]
    assert per["count"] == [len(f) - 1 for f in FEATURES]
    for loss, feature in zip(per["loss"], FEATURES):
        assert loss == pytest.approx(_reference_loss(llama, [feature]), rel=1e-5)
    assert m["eval_loss"] == pytest.approx(_reference_loss(llama, FEATURES), rel=1e-5)


def test_per_example_rows_keep_ids_labels_predictions_and_intervals_for_every_metric(tiny_bert_dir):
    """results.json can recompute any interval: stable ids, label / prediction per example; and every
    reported metric (macro-F1, precision, recall, per class, loss) has a bootstrap interval around it."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    feats = [{"input_ids": [2, 10 + i % 7, 11 + i % 3, 3], "label": i % 2} for i in range(24)]

    def collate_cls(batch):
        return {"input_ids": torch.tensor([f["input_ids"] for f in batch]),
                "attention_mask": torch.ones(len(batch), 4, dtype=torch.long),
                "labels": torch.tensor([f["label"] for f in batch])}

    m = evaluate(Classify(), model, feats, collate_cls, 8, per_example=True)
    per = m["per_example"]
    assert per["id"] == evaluate(Classify(), model, feats, collate_cls, 5, per_example=True)["per_example"]["id"]
    assert len(per["id"]) == 24 and len(set(per["id"])) == len({tuple(f["input_ids"]) for f in feats})
    assert per["label"] == [f["label"] for f in feats] and len(per["prediction"]) == 24
    again = classification_metrics(per["prediction"], per["label"], m["labels"])
    assert again["f1_macro"] == m["f1_macro"]
    for name in ("eval_loss", "accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_micro",
                 f"per_class/{m['labels'][0]}/f1"):
        ci = m["intervals"][name]
        value = m[name] if "/" not in name else m["per_class"][m["labels"][0]]["f1"]
        assert ci["low"] <= value <= ci["high"] and ci["n"] == 24 and ci["value"] == pytest.approx(value, abs=1e-12)
    json.dumps(m)
