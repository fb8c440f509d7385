"""Freeze with head: pooled: pooling math, feature cache, gradients, save / load, validation."""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.config.load import load_config
from lmforge.errors import UserError
from lmforge.methods import METHODS, build_method
from lmforge.methods.freeze.method import MANIFEST
from lmforge.methods.freeze.pooled import FeatureCache, PooledForSequenceClassification, pool
from lmforge.pipeline.plan import plan_run
from tests.contracts.cases import fresh_base, make_batch, task_for

HEAD = "sequence_classification"


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, HEAD: tiny_bert_dir}


def _freeze(**params):
    return build_method("freeze", METHODS["freeze"].params.model_validate({"head": "pooled", **params}))


def _pooled(dirs, **params):
    method = _freeze(**params)
    return method, method.apply(fresh_base(HEAD, dirs), task_for(HEAD))


def _count_encoder_calls(model) -> list:
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


# --- pooling math -----------------------------------------------------------------------------

def test_mean_pooling_averages_only_real_tokens():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0], [7.0, 8.0]]))


def test_cls_and_last_pooling_pick_the_first_and_last_real_token_on_either_padding_side():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "cls").flatten().tolist() == [0.0, 4.0]
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "cls").flatten().tolist() == [2.0, 4.0]
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]


def test_mlp_head_has_the_requested_hidden_size(dirs):
    _, model = _pooled(dirs, head_hidden=16)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(model.config.hidden_size, 16), (16, len(task_for(HEAD).labels))]


# --- model, gradients, cache ------------------------------------------------------------------

def test_output_is_like_a_transformers_classifier_and_only_the_head_gets_gradients(dirs):
    _, model = _pooled(dirs, head_hidden=8)
    batch = make_batch(HEAD, dirs)
    model.train()
    out = model(**batch)
    assert out.logits.shape == (batch["input_ids"].shape[0], len(task_for(HEAD).labels))
    out.loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("head.") for n in trained)
    assert not model.encoder.training  # frozen encoder: dropout stays off while the head trains


def test_last_layers_without_cache_trains_the_top_block_too(dirs):
    _, model = _pooled(dirs, last_layers=1)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.encoder.layer.1.") for n in names)
    assert not any(n.startswith("encoder.encoder.layer.0.") for n in names)
    model.train()
    assert model.encoder.training


def test_cached_logits_equal_uncached_logits(dirs):
    _, plain = _pooled(dirs, head_dropout=0.0)
    _, cached = _pooled(dirs, head_dropout=0.0, cache_features=True)
    cached.load_state_dict(plain.state_dict())
    batch = _inputs(make_batch(HEAD, dirs))
    plain.eval(), cached.eval()
    reference = plain(**batch).logits
    first = cached(**batch).logits  # misses: fills the cache
    second = cached(**batch).logits  # hits
    assert torch.allclose(first, reference, atol=1e-5)
    assert torch.equal(first, second)
    assert cached.cache.misses == batch["input_ids"].shape[0] == cached.cache.hits


def test_second_epoch_runs_zero_encoder_forwards(dirs):
    _, model = _pooled(dirs, cache_features=True)
    calls = _count_encoder_calls(model)
    batch = make_batch(HEAD, dirs)
    rows = list(range(batch["input_ids"].shape[0]))
    model.train()
    for i in rows:  # epoch 1, one row per step
        model(**{k: v[i:i + 1] for k, v in batch.items()}).loss.backward()
    assert len(calls) == len(rows)
    calls.clear()
    model(**batch).loss.backward()  # epoch 2, every row at once, other padding
    assert calls == []
    assert model.cache.hits == len(rows) and model.cache.misses == len(rows)


def test_training_loop_epoch_two_runs_zero_encoder_forwards(dirs, tmp_path):
    from lmforge.config.schema import RuntimeConfig, TrainConfig
    from lmforge.model import load_tokenizer
    from lmforge.objectives import build_objective
    from lmforge.objectives.registry import get_objective_spec
    from lmforge.train import train
    from lmforge.train.callbacks import Callback
    from tests.contracts.cases import model_config

    _, model = _pooled(dirs, cache_features=True)
    tokenizer = load_tokenizer(model_config(HEAD, dirs))
    spec = get_objective_spec("classification")
    objective = build_objective("classification", spec.params())
    texts = ["good food", "bad taste", "i love it", "never again", "fine", "great stuff"]
    features = [{"input_ids": tokenizer(t)["input_ids"], "label": i % 2} for i, t in enumerate(texts)]
    calls = _count_encoder_calls(model)
    per_step = []

    class Count(Callback):
        def on_step(self, state, logs):
            per_step.append(len(calls))

    cfg = TrainConfig(epochs=2, batch_size=2, lr=0.01)
    train(model, objective, features, train_cfg=cfg, runtime_cfg=RuntimeConfig(precision="fp32", device="cpu"), run_dir=tmp_path, collate=lambda f: objective.collate(f, tokenizer),
          evaluate_fn=None, seed=0, best_metric="eval_loss", metric_mode="min", resume=False, callbacks=[Count()])
    assert per_step == [1, 2, 3, 3, 3, 3]  # epoch 1: one encoder forward per step; epoch 2: none
    assert model.cache.hits == len(texts) and model.cache.misses == len(texts)


def test_cache_only_recomputes_the_rows_it_lacks_and_respects_its_limit(dirs):
    _, model = _pooled(dirs, cache_features=True, cache_limit=1)
    batch = _inputs(make_batch(HEAD, dirs))
    model.eval()
    model(**{k: v[:1] for k, v in batch.items()})
    assert len(model.cache) == 1
    model(**batch)
    assert len(model.cache) == 1 and model.cache.hits == 1
    assert model.cache.nbytes >= model.config.hidden_size * 4


def test_cache_keys_ignore_padding_but_not_tokens():
    ids = torch.tensor([[5, 6, 0, 0], [5, 6, 7, 0]])
    keys = FeatureCache.keys(ids, torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]]), None)
    again = FeatureCache.keys(ids[:1, :2], torch.ones(1, 2, dtype=torch.long), None)
    assert keys[0] == again[0] and keys[0] != keys[1]


def test_cache_with_a_trainable_encoder_is_refused(dirs):
    _, model = _pooled(dirs, cache_features=True)
    next(model.encoder.parameters()).requires_grad_(True)
    with pytest.raises(RuntimeError, match="frozen"):
        model(**_inputs(make_batch(HEAD, dirs)))


def test_hidden_states_are_returned_for_drift_statistics(dirs):
    _, model = _pooled(dirs, cache_features=True)
    batch = _inputs(make_batch(HEAD, dirs))
    out = model(**batch, output_hidden_states=True)
    assert out.hidden_states[-1].shape[:2] == batch["input_ids"].shape
    assert len(model.cache) == 0  # uncached path


# --- save / load ------------------------------------------------------------------------------

def test_save_load_round_trip_gives_identical_logits(dirs, tmp_path):
    method, model = _pooled(dirs, head_hidden=8, cache_features=True, pooling="cls")
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(torch.randn_like(p))
    model.eval()
    batch = _inputs(make_batch(HEAD, dirs))
    before = model(**batch).logits
    method.save(model, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["pooled_head"]["pooling"] == "cls" and manifest["pooled_head"]["num_labels"] == len(task_for(HEAD).labels)
    assert all(n.startswith("head.") for n in manifest["tensors"])
    torch.manual_seed(123)  # a different fresh head: the load must overwrite it
    loaded = method.load(fresh_base(HEAD, dirs), tmp_path, task_for(HEAD))
    assert isinstance(loaded, PooledForSequenceClassification)
    assert torch.equal(loaded(**batch).logits, before)


def test_merge_is_refused(dirs):
    method, model = _pooled(dirs)
    with pytest.raises(UserError, match="cannot be merged"):
        method.merge(model)


# --- validation -------------------------------------------------------------------------------

def _plan(tmp_path, method: str, fmt: str = "classification", extra: str = ""):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name: x}}\ndata: {{format: {fmt}, train: {data}}}\n"
                   f"method: {method}\n{extra}")
    return plan_run(load_config(cfg), str(cfg))


def test_pooled_plan_is_not_mergeable(tmp_path):
    plan = _plan(tmp_path, "{name: freeze, head: pooled, cache_features: true}")
    assert plan.export_merged is False
    assert _plan(tmp_path, "{name: freeze}").export_merged is True


@pytest.mark.parametrize("method, extra, field", [
    ("{name: freeze, head: pooled, cache_features: true, last_layers: 1}", "", "method.cache_features"),
    ("{name: freeze, pooling: cls}", "", "method.pooling"),
    ("{name: freeze, head: pooled, train_head: false}", "", "method.train_head"),
    ("{name: freeze, head: pooled}", "export: {merged: true}", "export.merged"),
    ("{name: freeze, head: pooled}", "export: {formats: [onnx]}", "export.formats"),
    ("{name: freeze, head: pooled}", "export: {adapter: false}", "export.adapter"),
    ("{name: freeze, head: pooled, pooling: max}", "", "method.pooling"),
])
def test_invalid_pooled_settings_fail_at_validate_time_naming_the_field(tmp_path, method, extra, field):
    with pytest.raises(UserError) as info:
        _plan(tmp_path, method, extra=extra)
    assert field in f"{info.value} {info.value.where}"


def test_pooled_head_needs_a_classification_objective(tmp_path):
    with pytest.raises(UserError, match="classification") as info:
        _plan(tmp_path, "{name: freeze, head: pooled}", fmt="text")
    assert "method.head" in info.value.where


def test_export_folder_loads_for_serving_with_labels_and_hidden_states(dirs, tmp_path):
    from lmforge.export import export_adapter, load_export

    method, model = _pooled(dirs, head_hidden=4, cache_features=True)
    model.eval()
    export_adapter(method, model, tmp_path / "adapter", task=task_for(HEAD))
    served, tokenizer = load_export(tmp_path / "adapter")
    assert served.cache is None  # loaded for inference: no feature cache growing with traffic
    enc = tokenizer(["good food", "bad taste here"], padding=True, return_tensors="pt")
    out = served(**enc, output_hidden_states=True)
    assert torch.allclose(out.logits, model(**enc).logits, atol=1e-6)
    assert out.hidden_states[-1].shape[:2] == enc["input_ids"].shape
    assert list(served.config.id2label.values()) == list(task_for(HEAD).labels)


def test_loading_a_folder_without_an_export_manifest_is_a_user_error(dirs, tmp_path):
    from lmforge.export import load_export

    method, model = _pooled(dirs)
    method.save(model, tmp_path)  # the method's files alone: no lmforge.json naming base, task and method
    with pytest.raises(UserError, match="not an lmforge export"):
        load_export(tmp_path)


@pytest.mark.slow
def test_minilm_cached_features_match_and_skip_the_encoder(minilm_dir):
    from lmforge.config.schema import ModelConfig
    from lmforge.model import load_model, load_tokenizer

    model_cfg, task = ModelConfig(name=str(minilm_dir)), task_for(HEAD)
    model = _freeze(cache_features=True, head_dropout=0.0).apply(load_model(model_cfg, task), task).eval()
    tokenizer = load_tokenizer(model_cfg)
    enc = dict(tokenizer(["great food, i love it", "it tasted bad", "ok"], padding=True, return_tensors="pt"))
    uncached = model(**enc, output_hidden_states=True).logits  # the uncached path
    calls = _count_encoder_calls(model)
    first, second = model(**enc).logits, model(**enc).logits
    assert len(calls) == 1 and model.cache.hits == 3
    assert torch.allclose(first, uncached, atol=1e-5) and torch.equal(first, second)


def test_dumped_params_of_a_plain_freeze_validate_again():
    from lmforge.methods.freeze.config import FreezeParams

    params = FreezeParams.model_validate({"last_layers": 1})
    assert FreezeParams.model_validate(params.model_dump()) == params
