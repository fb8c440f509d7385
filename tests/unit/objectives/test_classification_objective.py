from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from lmforge.objectives import build_objective
from lmforge.objectives.classification.config import ClassificationParams

# ids < 5: the tiny BERT fixture's vocabulary currently has only its 5 special tokens
FEATURES = [
    {"input_ids": [2, 1, 4, 3], "label": 0},
    {"input_ids": [2, 4, 3], "label": 0},
    {"input_ids": [2, 1, 1, 4, 3], "label": 1},
]


def _setup(tiny_bert_dir, smoothing=0.0):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3).eval()
    with torch.no_grad():  # a random head is near-uniform; make the classes distinguishable
        model.classifier.bias.copy_(torch.tensor([3.0, 0.0, -3.0]))
    objective = build_objective("classification", ClassificationParams(label_smoothing=smoothing))
    return objective, model, objective.collate(FEATURES, SimpleNamespace(pad_token_id=0))


def test_task_info_carries_the_label_set():
    info = build_objective("classification", ClassificationParams()).task_info(["neg", "neu", "pos"])
    assert (info.head, info.num_labels, info.labels) == ("sequence_classification", 3, ("neg", "neu", "pos"))
    with pytest.raises(ValueError):
        build_objective("classification", ClassificationParams()).task_info(None)


def test_loss_is_a_sum_over_examples(tiny_bert_dir):
    objective, model, batch = _setup(tiny_bert_dir)
    out = objective.loss(model, batch)
    assert out.count == objective.count(batch) == 3
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(out.total, torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"))
    smoothed, _, _ = _setup(tiny_bert_dir, smoothing=0.3)
    assert not torch.allclose(smoothed.loss(model, batch).total, out.total)


def test_eval_step_returns_predictions_references_and_probabilities(tiny_bert_dir):
    objective, model, batch = _setup(tiny_bert_dir)
    out = objective.eval_step(model, batch)
    assert out.count == 3 and out.references == [0, 0, 1]
    assert len(out.predictions) == 3 and all(p in (0, 1, 2) for p in out.predictions)
    assert len(out.scores) == 3 and all(len(s) == 3 and math.isclose(sum(s), 1.0, rel_tol=1e-5) for s in out.scores)
    assert out.predictions == [max(range(3), key=s.__getitem__) for s in out.scores]
    assert math.isclose(out.loss_total, float(objective.loss(model, batch).total), rel_tol=1e-5)


def test_encode_uses_the_label_set_from_task_info():
    from lmforge.config.schema import DataConfig
    from tests.fixtures.tiny import build_tiny_tokenizer

    objective = build_objective("classification", ClassificationParams())
    objective.task_info(["neg", "pos", "zzz"])
    data = DataConfig(format="classification", train="x.jsonl")
    records = [{"text": "good", "text_pair": None, "label": "pos", "_where": "x:1"}]
    features = objective.encode(records, build_tiny_tokenizer(), data)
    assert [f["label"] for f in features] == [1]  # "pos" alone would be id 0 without the shared set
