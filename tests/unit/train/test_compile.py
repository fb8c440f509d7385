"""runtime.compile: the transformer blocks are torch.compile'd in place behind the runtime."""

from __future__ import annotations

import pytest
import torch

from lmforge.config.schema import ModelConfig, RuntimeConfig, TrainConfig
from lmforge.data.collate import collate_causal
from lmforge.methods import METHODS, build_method
from lmforge.model import load_model
from lmforge.model.task import TaskInfo
from lmforge.objectives import build_objective
from lmforge.objectives.registry import get_objective_spec
from lmforge.train import train
from tests.fixtures.callbacks import LossRecorder as _Losses
from lmforge.train.checkpoint import load_trainable, trainable_state
from lmforge.train.checkpointing import checkpointable_layers
from lmforge.train.runtime import Runtime, compile_blocks, use_int8_base


def _model(model_dir):
    task = TaskInfo("causal_lm")
    torch.manual_seed(0)  # the LoRA init draws from the global RNG
    method = build_method("lora", METHODS["lora"].params())
    return method.apply(load_model(ModelConfig(name=str(model_dir)), task), task)


def test_compile_blocks_compiles_in_place_and_keeps_state_dict_keys(tiny_llama_dir):
    model = _model(tiny_llama_dir)
    keys = list(model.state_dict())
    assert compile_blocks(model) == len(checkpointable_layers(model)) == 2
    assert all(block._compiled_call_impl is not None for block in checkpointable_layers(model))
    assert list(model.state_dict()) == keys and not any("_orig_mod" in k for k in keys)


def test_runtime_prepare_compiles_only_when_asked(tiny_llama_dir):
    model = _model(tiny_llama_dir)
    Runtime(device=torch.device("cpu"), precision="fp32").prepare(model)
    assert all(block._compiled_call_impl is None for block in checkpointable_layers(model))


@pytest.mark.slow  # inductor compiles C++ kernels: 15-100 s on a 2-core CPU
def test_compiled_training_matches_eager_and_checkpoints_load(tiny_llama_dir, tmp_path):
    g = torch.Generator().manual_seed(0)
    features = [{"input_ids": (ids := torch.randint(3, 60, (12,), generator=g).tolist()), "labels": ids} for _ in range(32)]
    objective = build_objective("causal_lm", get_objective_spec("causal_lm").params())
    results = {}
    for compiled in (False, True):
        model = _model(tiny_llama_dir)
        cfg = TrainConfig(max_steps=4, batch_size=8, lr=1e-3, tensorboard=False, log_every=1)
        losses = _Losses()
        train(model, objective, features, train_cfg=cfg, runtime_cfg=RuntimeConfig(device="cpu", precision="fp32", compile=compiled),
              run_dir=tmp_path / str(compiled),
              collate=lambda f: collate_causal(f, 0), evaluate_fn=None, seed=0, best_metric="eval_loss",
              metric_mode="min", callbacks=[losses])
        results[compiled] = (losses.values, trainable_state(model))
    eager, compiled = results[False], results[True]
    assert len(eager[0]) == 4
    assert compiled[0][0] == pytest.approx(eager[0][0], rel=1e-5)  # same weights, same batch
    assert compiled[0] == pytest.approx(eager[0], rel=1e-3)  # kernel fusion reorders fp32 sums
    assert compiled[1].keys() == eager[1].keys()
    fresh = _model(tiny_llama_dir)
    load_trainable(fresh, tmp_path / "True" / "checkpoints" / "last")  # the compiled run's checkpoint
    for name, value in trainable_state(fresh).items():
        torch.testing.assert_close(value, compiled[1][name])


@pytest.mark.slow  # inductor compiles C++ kernels
@pytest.mark.parametrize("method,params,int8", [
    ("lora", {"dropout": 0.1}, False),
    # the int8 base (runtime.precision int8) with dropout: inductor's scheduler used to reorder the layers' key
    # draws here (each layer got another layer's key), which draw_key's compiler.disable now prevents
    ("lora", {"dropout": 0.1}, True),
    ("adapter", {"style": "houlsby", "reduction_factor": 4}, False),
    # peft's DoRA layer draws dropout through nn.Dropout, which inductor replaces by its own generator (other
    # masks than eager's, by design), so DoRA is compared without dropout
    ("lora", {"use_dora": True, "dropout": 0.0}, False),
    ("full", {}, False),
    ("prefix_tuning", {}, False),
])
def test_compiled_blocks_give_eager_gradients(tiny_llama_dir, method, params, int8):
    # What runtime.compile traces of lmforge's own code (the fused LoRA autograd function with its dropout
    # masks, the bottleneck adapters' hooks, packed attention over a padding-free row) must give the eager
    # gradients. Every trainable tensor is moved off its initialisation first: LoRA's B starts at zero, which
    # hides errors on the LoRA path's input gradient (the training comparison above did not see one).
    from lmforge.data.packing import collate_packed

    task = TaskInfo("causal_lm")
    torch.manual_seed(0)
    model = build_method(method, METHODS[method].params(**params)).apply(
        load_model(ModelConfig(name=str(tiny_llama_dir)), task), task)
    if int8:  # what Runtime.prepare does for precision int8 (the same int8 kernel eager and compiled)
        assert use_int8_base(model, True) > 0
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in trainable.values():
            p.add_(torch.randn(p.shape, generator=noise) * 0.05)
    g = torch.Generator().manual_seed(2)
    rows = [{"input_ids": (ids := torch.randint(3, 60, (n,), generator=g).tolist()), "labels": ids,
             "lengths": [n // 2, n - n // 2]} for n in (14, 10)]
    batch = collate_packed(rows)  # one flat row, positions restarting at each example
    objective = build_objective("causal_lm", get_objective_spec("causal_lm").params())
    model.train()
    grads = []
    for compiled in (False, True):
        if compiled:
            compile_blocks(model)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the same dropout keys
        out = objective.loss(model, batch)
        out.total.backward()
        grads.append({n: p.grad.clone() for n, p in trainable.items()})
    assert grads[0].keys() == grads[1].keys()
    assert [n for n, g in grads[0].items() if not g.abs().sum() > 0] == []
    # the same products summed in another order: fp32 rounding, relative ~1e-7 per operation over a few
    # hundred chained operations -> within 1e-4 of each gradient's largest entry
    for name, eager in grads[0].items():
        torch.testing.assert_close(grads[1][name], eager, rtol=1e-4, atol=1e-4 * eager.abs().max().item(),
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.slow  # inductor compiles C++ kernels
@pytest.mark.parametrize("method,params", [("lora", {"dropout": 0.0}), ("full", {})])
def test_compiled_encoder_blocks_give_eager_gradients(tiny_bert_dir, method, params):
    # the classifier path (a BERT encoder, its pooled head, the classification objective) through compiled blocks.
    # BERT's own dropout is nn.Dropout, which inductor replaces by its own generator, so it is switched off here.
    # Tolerance relative to the largest gradient of the model: the attention key biases' gradients are exactly
    # zero in exact arithmetic (softmax ignores a shift shared by all of a query's scores), so each run returns its
    # own rounding noise (~1e-10) there.
    from tests.contracts.cases import LABELS, TEXTS

    from lmforge.model.load import load_tokenizer

    task = TaskInfo("sequence_classification", num_labels=len(LABELS), labels=LABELS)
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_bert_dir)))
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    batch["labels"] = torch.arange(len(TEXTS)) % len(LABELS)
    objective = build_objective("classification", get_objective_spec("classification").params())
    grads = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build_method(method, METHODS[method].params(**params)).apply(
            load_model(ModelConfig(name=str(tiny_bert_dir)), task), task)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        noise = torch.Generator().manual_seed(1)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            for p in trainable.values():
                p.add_(torch.randn(p.shape, generator=noise) * 0.05)
        if compiled:
            assert compile_blocks(model) == 2
        model.train()
        objective.loss(model, batch).total.backward()
        grads.append({n: p.grad.clone() for n, p in trainable.items()})
    largest = max(g.abs().max().item() for g in grads[0].values())
    assert grads[0].keys() == grads[1].keys() and largest > 0
    for name, eager in grads[0].items():
        torch.testing.assert_close(grads[1][name], eager, rtol=1e-4, atol=1e-5 * largest,
                                   msg=lambda m, name=name: f"{name}: {m}")
