"""`lmforge estimate` without weights: the run's model on the meta device, counts equal to a real load."""

from __future__ import annotations

import json
import resource
import shutil

import pytest
import torch

from lmforge.config import load_config
from lmforge.model.task import TaskInfo
from lmforge.pipeline.plan import plan_run
from lmforge.train.estimate_run import estimate_run

LLAMA_7B = {  # Llama-2-7B's config fields
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}
CHAT = [{"messages": [{"role": "user", "content": f"what is the rate of loan {i} ?"},
                      {"role": "assistant", "content": "the rate is " + "good " * (i % 7)}]} for i in range(40)]
REVIEWS = [{"text": "great food " * (1 + i % 5), "label": ["positive", "negative", "neutral"][i % 3]} for i in range(30)]


def _config(tmp_path, model: str, data: list[dict], fmt: str, method: str = "lora", extra: str = ""):
    data_file = tmp_path / "train.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in data))
    path = tmp_path / "run.yaml"
    path.write_text(f"model: {{name: '{model}'}}\ndata: {{format: {fmt}, train: '{data_file}', max_length: 64}}\n"
                    f"method: {method if method.startswith('{') else '{name: ' + method + '}'}\ntrain: {{batch_size: 4}}\n{extra}")
    config = load_config(str(path))
    return config, plan_run(config, str(path))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("method", ["lora", "full"])
def test_7b_config_without_weights_is_estimated_on_the_meta_device(tmp_path, tiny_tokenizer_dir, method):
    folder = tmp_path / "llama-7b"
    shutil.copytree(tiny_tokenizer_dir, folder)  # tokenizer files only; no weight file exists at all
    (folder / "config.json").write_text(json.dumps(LLAMA_7B))
    config, plan = _config(tmp_path, str(folder), CHAT, "chat", method)
    before = _peak_mib()
    run = estimate_run(config, plan)
    assert _peak_mib() - before < 1024  # 6.7B fp32 weights would be 25 GiB
    assert run.total_params == pytest.approx(6.74e9, rel=0.01)
    est = run.estimate
    if method == "full":
        assert run.trainable_params == run.total_params
        assert est.breakdown["optimizer"] == pytest.approx(8 * run.total_params)
    else:  # LoRA r=8 (the default) on every linear layer of the 32 blocks
        assert 1e7 < run.trainable_params < 1e8
    # precision auto is bf16 on a CPU with native bf16 (AMX / AVX512-BF16), which stores a frozen base in bf16
    frozen_bytes = 2 if method == "lora" and run.precision == "bf16" else 4
    assert est.breakdown["weights"] >= frozen_bytes * run.total_params * 0.99
    assert est.peak_bytes > frozen_bytes * run.total_params
    assert len(run.lengths) == run.records and 30 <= run.records < len(CHAT)  # the rest is held out


@pytest.mark.parametrize("method", ["lora", "{name: freeze, last_layers: 1}", "ia3", "prompt_tuning", "full"])
def test_meta_counts_equal_a_real_load(tmp_path, tiny_llama_dir, method):
    from lmforge.methods import build_method
    from lmforge.methods.base import count_parameters
    from lmforge.model import load_model

    config, plan = _config(tmp_path, str(tiny_llama_dir), CHAT, "chat", method)
    run = estimate_run(config, plan)
    task = TaskInfo(plan.objective.head)
    real = build_method(plan.method.name, plan.method_params).apply(load_model(config.model, task), task)
    assert (run.trainable_params, run.total_params) == count_parameters(real)


def test_classifier_has_no_vocabulary_logits(tmp_path, tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    config, plan = _config(tmp_path, str(tiny_bert_dir), REVIEWS, "classification", "full")
    run = estimate_run(config, plan)
    real = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    assert run.total_params == sum(p.numel() for p in real.parameters())
    assert run.estimate.inputs.classifier and run.estimate.breakdown["logits"] == 0.0
    as_lm = estimate_run(*_config(tmp_path, str(tiny_bert_dir), CHAT, "chat", "full"))
    assert not as_lm.estimate.inputs.classifier and as_lm.estimate.breakdown["logits"] > 0


def test_gguf_model_is_sized_from_metadata_without_conversion(tmp_path, monkeypatch):
    from tests.unit.model.gguf_writer import LAYERS, write_tiny_gguf

    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path / "cache"))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    config, plan = _config(tmp_path, str(gguf), CHAT, "chat", "lora")
    run = estimate_run(config, plan)
    assert run.estimate.inputs.shape.layers == LAYERS and run.trainable_params > 0
    assert not (tmp_path / "cache").exists()  # nothing dequantized, nothing cached


def test_qlora_counts_the_lora_it_would_train(tmp_path, tiny_llama_dir):
    config, plan = _config(tmp_path, str(tiny_llama_dir), CHAT, "chat", "qlora")
    lora_config, lora_plan = _config(tmp_path, str(tiny_llama_dir), CHAT, "chat", "lora")
    qlora, lora = estimate_run(config, plan), estimate_run(lora_config, lora_plan)
    assert qlora.trainable_params == lora.trainable_params > 0
    assert qlora.estimate.inputs.frozen_bits == 4
    assert qlora.estimate.breakdown["weights"] < lora.estimate.breakdown["weights"]


def test_meta_model_holds_no_storage(tiny_llama_dir):
    from lmforge.config.schema import ModelConfig
    from lmforge.model.meta import is_meta, meta_model
    from lmforge.model.task import TaskInfo

    model = meta_model(ModelConfig(name=str(tiny_llama_dir)), TaskInfo("causal_lm"))
    assert is_meta(model) and all(p.device == torch.device("meta") for p in model.parameters())


def test_lora_dropout_is_counted_from_the_adapted_layers(tmp_path, tiny_llama_dir):
    """peft's LoRA forward (DoRA here) keeps each adapted layer's dropped-out input and mask for
    backward; lmforge's fused LoRA layers keep only a 1-byte mask."""
    from lmforge.methods.peft_wrap import dropout_saved_elements

    def run(method):
        return estimate_run(*_config(tmp_path, str(tiny_llama_dir), CHAT, "chat", method)).estimate

    with_dropout = run("{name: lora, dropout: 0.1, use_dora: true, target_modules: [q_proj, down_proj]}")
    without = run("{name: lora, dropout: 0.0, use_dora: true, target_modules: [q_proj, down_proj]}")
    fused = run("{name: lora, dropout: 0.1, target_modules: [q_proj, down_proj]}")
    # 2 layers x (q_proj: hidden 32 in + down_proj: intermediate 64 in)
    assert with_dropout.inputs.dropout_elements == 2 * (32 + 64)
    assert without.inputs.dropout_elements == 0 and fused.inputs.dropout_elements == 0
    assert fused.inputs.dropout_mask_elements == 2 * (32 + 64) and with_dropout.inputs.dropout_mask_elements == 0
    assert with_dropout.breakdown["activations"] > without.breakdown["activations"]
    from lmforge.train.estimate import ACT_PRECISION

    per_byte = fused.breakdown["activations"] - without.breakdown["activations"]  # 1-byte masks
    peft_bytes = with_dropout.breakdown["activations"] - without.breakdown["activations"]  # copy + mask
    assert per_byte > 0 and peft_bytes == pytest.approx(per_byte * (4 * ACT_PRECISION[fused.inputs.precision] + 1))
    assert dropout_saved_elements(torch.nn.Linear(3, 3)) == 0
