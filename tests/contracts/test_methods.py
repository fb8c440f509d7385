"""Every registered method x every objective it supports passes the same table of checks.

apply -> only trainable params require grad (at least one) -> forward/backward: finite loss,
non-zero grads -> an optimizer step changes outputs -> save -> load over a fresh base gives
identical logits -> merge (when mergeable) equals unmerged and is a plain transformers model.
Methods registered later are covered automatically.
"""

from __future__ import annotations

import pytest
import torch

from lmforge.methods import METHODS, build_method
from lmforge.objectives import OBJECTIVES
from tests.contracts.cases import CONTRACT_PARAMS, fresh_base, logits, make_batch, task_for


def _cases():
    """Every method x every model head its supported objectives need (the contract depends on the
    head only; each objective's own loss runs with every method in tests/invariants/test_preference.py
    and the objective tests)."""
    for method, spec in sorted(METHODS.items()):
        heads = {}
        for objective, ospec in sorted(OBJECTIVES.items()):
            if spec.objectives is None or objective in spec.objectives:
                heads.setdefault(ospec.head, objective)
        for head, objective in sorted(heads.items()):
            yield pytest.param(method, head, id=f"{method}-{head}")


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _method(name):
    spec = METHODS[name]
    return build_method(name, spec.params.model_validate(CONTRACT_PARAMS.get(name, {})))


@pytest.mark.parametrize(("method_name", "head"), list(_cases()))
def test_method_contract(method_name, head, dirs, tmp_path):
    from transformers import PreTrainedModel

    method = _method(method_name)
    task = task_for(head)
    batch = make_batch(head, dirs)
    model = method.apply(fresh_base(head, dirs, **method.load_kwargs()), task)

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    assert trainable, "the method trains nothing"
    if method_name != "full":
        assert sum(p.numel() for _, p in trainable) < total

    model.train()
    torch.manual_seed(1)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for _, p in trainable]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    frozen_grads = [p.grad for p in model.parameters() if not p.requires_grad]
    assert all(g is None for g in frozen_grads)

    before = logits(model, batch)
    torch.optim.AdamW([p for _, p in trainable], lr=1e-2).step()
    trained = logits(model, batch)
    assert not torch.allclose(before, trained), "an optimizer step did not change the outputs"

    method.save(model, tmp_path / "saved")
    reloaded = method.load(fresh_base(head, dirs, **method.load_kwargs()), tmp_path / "saved", task)
    torch.testing.assert_close(logits(reloaded, batch), trained, rtol=0, atol=0)

    if METHODS[method_name].mergeable:
        merged = method.merge(reloaded)
        torch.testing.assert_close(logits(merged, batch), trained, rtol=0, atol=1e-5)
        assert isinstance(merged, PreTrainedModel)
        assert not any("lora_" in n or "base_layer" in n for n, _ in merged.named_parameters())
        assert type(merged).__module__.startswith("transformers.")


@pytest.mark.parametrize(("method_name", "head"), list(_cases()))
def test_export_loads_back_through_the_method_it_records(method_name, head, dirs, tmp_path):
    """export_adapter -> lmforge.json -> load_export (what `lmforge serve` runs) gives the trained logits;
    the method's card usage names the folder."""
    from lmforge.export import export_adapter, load_export

    method = _method(method_name)
    task = task_for(head)
    batch = make_batch(head, dirs)
    model = method.apply(fresh_base(head, dirs, **method.load_kwargs()), task)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in (p for p in model.parameters() if p.requires_grad):
            param.add_(torch.randn_like(param) * 0.05)
    trained = logits(model, batch)
    folder = export_adapter(method, model, tmp_path / "adapter", task=task)
    loaded, _tokenizer = load_export(folder)
    torch.testing.assert_close(logits(loaded, batch), trained, rtol=0, atol=1e-6)
    usage = method.usage(str(folder), str(dirs[head]), task)
    assert usage.library and any(repr(str(folder)) in line for line in usage.lines)
