"""LoRA through peft: targets, classification head via modules_to_save, plain-peft loading."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from lmforge.errors import UserError
from lmforge.methods import METHODS, build_method
from tests.contracts.cases import fresh_base, logits, make_batch, task_for


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_bert_dir):
    return {"causal_lm": tiny_llama_dir, "sequence_classification": tiny_bert_dir}


def _lora(**params):
    return build_method("lora", METHODS["lora"].params.model_validate(params))


def _trainable(model):
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_target_list_limits_the_adapted_layers(dirs):
    model = _lora(target_modules=["q_proj", "v_proj"], r=2).apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))
    names = _trainable(model)
    assert names and all("lora_" in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}
    assert model.peft_config["default"].r == 2


def test_unknown_target_is_a_user_error(dirs):
    with pytest.raises(UserError, match="cannot be applied"):
        _lora(target_modules=["no_such_proj"]).apply(fresh_base("causal_lm", dirs), task_for("causal_lm"))


def test_scaling_follows_alpha_and_rslora(dirs):
    model = _lora(r=4, alpha=8, use_rslora=True, target_modules=["q_proj"]).apply(
        fresh_base("causal_lm", dirs), task_for("causal_lm")
    )
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.scaling["default"] == pytest.approx(8 / 4**0.5)


def test_bias_all_trains_biases(dirs):
    head = "sequence_classification"
    model = _lora(bias="all").apply(fresh_base(head, dirs), task_for(head))
    assert any(n.endswith("attention.self.query.base_layer.bias") for n in _trainable(model))


def test_classifier_is_trained_and_saved_and_loads_with_plain_peft(dirs, tmp_path):
    from peft import PeftModel

    head = "sequence_classification"
    batch = make_batch(head, dirs)
    method = _lora(r=2, dropout=0.0)
    model = method.apply(fresh_base(head, dirs), task_for(head))
    assert any("classifier" in n for n in _trainable(model))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05)
    expected = logits(model, batch)
    method.save(model, tmp_path)
    assert (tmp_path / "adapter_config.json").is_file()
    with safe_open(str(tmp_path / "adapter_model.safetensors"), framework="pt") as handle:
        assert any("classifier" in k for k in handle.keys())
    plain = PeftModel.from_pretrained(fresh_base(head, dirs), str(tmp_path))
    torch.testing.assert_close(logits(plain, batch), expected, rtol=0, atol=0)
    assert not any(p.requires_grad for p in plain.parameters())


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_gpt2_conv1d_layers_are_adapted_without_a_warning_and_merge_exactly(method):
    """GPT-2 stores its projections as transformers' Conv1D (weight in x out): the peft config says so
    (fan_in_fan_out) instead of peft warning and fixing it per layer; the merged model equals the adapted one."""
    import warnings

    import transformers as tf

    from lmforge.model.task import TaskInfo

    torch.manual_seed(0)
    base = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32))
    chosen = build_method(method, METHODS[method].params.model_validate({}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # peft's "fan_in_fan_out is set to False but the target module is Conv1D"
        model = chosen.apply(base, TaskInfo("causal_lm"))
    with torch.no_grad():  # move the add-on off its identity init so the merge has something to fold in
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(0, 64, (2, 9))
    model.eval()  # GPT-2's own dropout off
    adapted = model(input_ids=ids).logits
    merged = chosen.merge(model)(input_ids=ids).logits
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)  # fp32 re-association of one add
