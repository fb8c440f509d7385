"""Prompt tuning, prefix tuning, P-tuning and IA3 (peft), and the validate-time rules they declare."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from lmforge.config.schema import RunConfig
from lmforge.errors import UserError
from lmforge.methods import METHODS, build_method
from lmforge.model.load import load_tokenizer
from lmforge.pipeline.plan import plan_run
from tests.contracts.cases import fresh_base, logits, make_batch, model_config, task_for


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _method(name, **params):
    return build_method(name, METHODS[name].params.model_validate(params))


def _config(method: str, **sections) -> RunConfig:
    raw = {"model": {"name": "x"}, "data": {"format": "chat", "train": "a.jsonl"}, "method": {"name": method}}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return RunConfig.model_validate(raw)


def test_specs_declare_merge_and_packing_capabilities():
    for name in ("prompt_tuning", "prefix_tuning", "p_tuning"):
        assert METHODS[name].mergeable is False and METHODS[name].can_pack is False
    assert METHODS["ia3"].mergeable is True and METHODS["ia3"].can_pack is True
    assert METHODS["qlora"].quantized_base is True


def test_prompt_tuning_text_init_copies_the_words_embeddings(dirs):
    head = "causal_lm"
    text = "what is the capital of france"
    model = _method("prompt_tuning", num_virtual_tokens=6, init="text", init_text=text).apply(
        fresh_base(head, dirs), task_for(head)
    )
    prompt = model.prompt_encoder["default"].embedding.weight
    assert prompt.shape == (6, 32) and prompt.requires_grad
    ids = load_tokenizer(model_config(head, dirs))(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 6
    words = model.get_base_model().get_input_embeddings().weight[ids]
    torch.testing.assert_close(prompt.detach(), words.detach(), rtol=0, atol=0)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trained == 6 * 32


def test_prompt_tuning_params_are_checked():
    params = METHODS["prompt_tuning"].params
    with pytest.raises(ValidationError, match="init_text"):
        params.model_validate({"init": "text"})
    with pytest.raises(ValidationError, match="only used with init: text"):
        params.model_validate({"init_text": "hello"})
    with pytest.raises(ValidationError):
        params.model_validate({"num_virtual_tokens": 0})


@pytest.mark.parametrize(
    ("name", "params"),
    [("prefix_tuning", {"num_virtual_tokens": 3, "projection": True, "projection_hidden_size": 8}),
     ("p_tuning", {"num_virtual_tokens": 3, "encoder": "lstm", "encoder_hidden_size": 8})],
)
def test_reparameterised_prompts_train_and_logits_keep_the_input_length(dirs, name, params):
    head = "causal_lm"
    batch = make_batch(head, dirs)
    model = _method(name, **params).apply(fresh_base(head, dirs), task_for(head))
    assert model.peft_config["default"].num_virtual_tokens == 3
    model.train()
    model(**batch).loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert logits(model, batch).shape[1] in (batch["input_ids"].shape[1], batch["input_ids"].shape[1] + 3)


def test_ia3_explicit_targets_and_checks(dirs):
    head = "causal_lm"
    model = _method("ia3", target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]).apply(
        fresh_base(head, dirs), task_for(head)
    )
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all("ia3_l" in n for n in trained)
    assert {n.split(".")[-3] for n in trained} == {"k_proj", "v_proj", "down_proj"}
    with pytest.raises(ValidationError, match="not in target_modules"):
        METHODS["ia3"].params.model_validate({"target_modules": ["k_proj"], "feedforward_modules": ["down_proj"]})
    with pytest.raises(UserError, match="cannot be applied"):
        _method("ia3", target_modules=["no_such_proj"]).apply(fresh_base(head, dirs), task_for(head))


def test_fresh_ia3_is_a_no_op(dirs):
    head = "sequence_classification"
    batch = make_batch(head, dirs)
    base = fresh_base(head, dirs)
    expected = logits(base, batch)
    model = _method("ia3").apply(base, task_for(head))
    torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["prompt_tuning", "prefix_tuning", "p_tuning", "adapter"])
def test_unmergeable_methods_with_merged_export_fail_at_validate(name):
    with pytest.raises(UserError, match="cannot be merged") as info:
        plan_run(_config(name, export={"merged": True}))
    assert "export.merged" in info.value.where
    assert plan_run(_config(name)).export_merged is False


@pytest.mark.parametrize("name", ["prompt_tuning", "prefix_tuning", "p_tuning"])
def test_virtual_token_methods_with_packing_fail_at_validate(name):
    with pytest.raises(UserError, match="packed rows") as info:
        plan_run(_config(name, data={"format": "text", "packing": True}))
    assert "data.packing" in info.value.where


@pytest.mark.parametrize("name", ["ia3", "qlora", "adapter"])
def test_mergeable_or_packable_methods_validate(name):
    plan = plan_run(_config(name, data={"format": "text", "packing": True}))
    assert plan.export_merged is METHODS[name].mergeable


@pytest.mark.parametrize("name", ["prompt_tuning", "prefix_tuning", "p_tuning", "adapter"])
def test_generation_runs_through_unmergeable_methods(dirs, name):
    """Unmergeable methods are served as trained: generate() must work on the applied model."""
    head = "causal_lm"
    batch = make_batch(head, dirs)
    params = {} if name == "adapter" else {"num_virtual_tokens": 3}
    model = _method(name, **params).apply(fresh_base(head, dirs), task_for(head)).eval()
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=3,
                         do_sample=False)
    assert out.shape == (batch["input_ids"].shape[0], batch["input_ids"].shape[1] + 3)
    assert torch.equal(out[:, : batch["input_ids"].shape[1]], batch["input_ids"])
