"""Several classification heads on one encoder: routing, gradients, methods, save / load."""

import json

import pytest
import torch
import torch.nn.functional as F

from lmforge.config.schema import ModelConfig
from lmforge.methods import build_method
from lmforge.methods.registry import get_method_spec
from lmforge.model import load_model
from lmforge.model.multihead import MultiHeadClassifier, build_multihead, load_multihead, pool, save_multihead, single_head
from lmforge.model.task import TaskInfo

TASK = TaskInfo("sequence_classification", 3, None, (("sent", ("great", "other")), ("topic", ("a", "b", "c"))))
LOW = torch.finfo(torch.float32).min


def build(tiny_bert_dir, method: str = "full"):
    torch.manual_seed(0)
    base = build_multihead(load_model(ModelConfig(name=str(tiny_bert_dir)), single_head(TASK)), TASK)
    spec = get_method_spec(method)
    return build_method(method, spec.params()).apply(base, TASK)


def batch(task_ids: list[int]) -> dict:
    torch.manual_seed(1)
    ids = torch.randint(5, 40, (len(task_ids), 6))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "task": torch.tensor(task_ids)}


def test_each_row_uses_its_own_tasks_head(tiny_bert_dir):
    model = build(tiny_bert_dir).eval()
    assert isinstance(model, MultiHeadClassifier) and [n for n, _ in model.tasks] == ["sent", "topic"]
    b = batch([0, 1, 1, 0])
    with torch.no_grad():
        logits = model(**b).logits
        pooled = pool(model.encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]), b["attention_mask"])
        want_sent, want_topic = model.heads["sent"](pooled), model.heads["topic"](pooled)
    assert logits.shape == (4, 3)
    for row, task in enumerate([0, 1, 1, 0]):
        want = (want_sent if task == 0 else want_topic)[row]
        assert torch.allclose(logits[row, : len(want)], want, atol=1e-6)
    assert logits[0, 2] == LOW and logits[3, 2] == LOW  # the 2-label task's third slot is padding
    assert logits.argmax(-1)[0] < 2 and torch.softmax(logits, -1)[0, 2] == 0
    # cross-entropy over a padded row equals cross-entropy over the task's own classes
    assert torch.allclose(F.cross_entropy(logits[:1], torch.tensor([1])), F.cross_entropy(want_sent[:1], torch.tensor([1])))


def test_gradients_reach_only_the_heads_in_the_batch(tiny_bert_dir):
    model = build(tiny_bert_dir).train()
    loss = F.cross_entropy(model(**batch([0, 0, 0])).logits, torch.tensor([0, 1, 0]))
    loss.backward()
    assert model.heads["sent"].classifier.weight.grad.abs().sum() > 0
    # the absent task's head is in the graph (DDP needs every parameter used) but learns nothing
    assert torch.count_nonzero(model.heads["topic"].classifier.weight.grad) == 0
    assert torch.count_nonzero(model.heads["topic"].classifier.bias.grad) == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_out_of_range_task_fails(tiny_bert_dir):
    model = build(tiny_bert_dir)
    with pytest.raises(ValueError, match="task index out of range"):
        model(**batch([0, 2]))


@pytest.mark.parametrize("method, encoder_trains", [("full", True), ("freeze", False), ("lora", True)])
def test_methods_train_the_heads_and_restore_from_trainable_state(tiny_bert_dir, method, encoder_trains):
    from lmforge.train.checkpoint import load_trainable, save_checkpoint
    from lmforge.train.state import LoopState

    model = build(tiny_bert_dir, method).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert sum("heads.sent.classifier" in n for n in trainable) >= 2 and sum("heads.topic" in n for n in trainable) >= 2
    assert any("encoder" in n for n in trainable) == encoder_trains
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    F.cross_entropy(model(**batch([0, 1, 1])).logits, torch.tensor([1, 2, 0])).backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        want = model(**batch([1, 0, 1])).logits
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp) / "ckpt", model, LoopState())
        fresh = load_trainable(build(tiny_bert_dir, method), Path(tmp) / "ckpt").eval()
    with torch.no_grad():
        assert torch.allclose(fresh(**batch([1, 0, 1])).logits, want, atol=1e-6)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_save_and_load_multihead_round_trip(tiny_bert_dir, tmp_path, method):
    from transformers import AutoTokenizer

    model = build(tiny_bert_dir, method).eval()
    spec = get_method_spec(method)
    merged = build_method(method, spec.params()).merge(model)
    folder = save_multihead(merged, AutoTokenizer.from_pretrained(tiny_bert_dir), tmp_path / "mt")
    manifest = json.loads((folder / "multitask.json").read_text())
    assert manifest["tasks"] == [{"name": "sent", "labels": ["great", "other"]}, {"name": "topic", "labels": ["a", "b", "c"]}]
    assert {"config.json", "model.safetensors", "heads.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    reloaded = load_multihead(folder)
    b = batch([0, 1, 0, 1])
    with torch.no_grad():
        assert torch.allclose(reloaded(**b).logits, merged(**b).logits, atol=1e-5)
    assert torch.equal(MultiHeadClassifier.from_pretrained(folder).heads["topic"].classifier.weight,
                       reloaded.heads["topic"].classifier.weight)


def test_without_task_the_forward_gives_encoder_features_only(tiny_bert_dir):
    model = build(tiny_bert_dir).eval()
    b = batch([0, 1])
    with torch.no_grad():
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
    assert out.logits is None and out.hidden_states[-1].shape[:2] == (2, 6)
