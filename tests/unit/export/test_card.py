"""Model card: provenance (base, method, data hashes), resolved config, metrics, usage snippet."""

from __future__ import annotations

import hashlib
import json
import re

import yaml

from lmforge.export import file_sha256, write_model_card


def _card(tmp_path, exports):
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "what is a bond?", "answer": "a loan"}\n')
    return {
        "base_model": "/models/tiny-llama",
        "method": {"name": "lora", "r": 4, "alpha": 8.0},
        "objective": "causal_lm",
        "data_files": [{"path": str(data), "sha256": file_sha256(data)}],
        "config": {"model": {"name": "/models/tiny-llama"}, "method": {"name": "lora", "r": 4}, "train": {"lr": 0.01}},
        "metrics": {"before": {"eval_loss": 4.0, "perplexity": 54.6}, "after": {"eval_loss": 2.5, "perplexity": 12.18}},
        "exports": exports,
    }


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    payload = bytes(range(256)) * 9000  # > 1 MiB chunk
    path.write_bytes(payload)
    assert file_sha256(path) == hashlib.sha256(payload).hexdigest()


def test_card_has_provenance_metrics_config_and_usage(tmp_path):
    card = _card(tmp_path, {"adapter": str(tmp_path / "adapter"), "merged": str(tmp_path / "merged")})
    path = write_model_card(tmp_path, card)
    text = path.read_text()
    assert path == tmp_path / "README.md"
    front = yaml.safe_load(text.split("---")[1])
    assert front["base_model"] == "/models/tiny-llama" and front["library_name"] == "peft"
    assert card["data_files"][0]["sha256"] in text and "sha256" in text
    assert "- **method**: lora (r=4, alpha=8.0)" in text
    assert "| eval_loss | 4.0000 | 2.5000 |" in text and "| perplexity | 54.6000 | 12.1800 |" in text
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    assert config == card["config"]
    assert f"AutoModelForCausalLM.from_pretrained({str(tmp_path / 'merged')!r})" in text
    assert f"PeftModel.from_pretrained(base, {str(tmp_path / 'adapter')!r})" in text


def test_usage_snippet_runs_on_the_written_folders(tmp_path, tiny_llama_dir):
    card = _card(tmp_path, {"merged": str(tiny_llama_dir)})
    text = write_model_card(tmp_path, card).read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(snippet, scope)  # the card's own usage code loads the model
    assert type(scope["model"]).__name__ == "LlamaForCausalLM" and scope["tokenizer"].chat_template


def test_classifier_card_uses_sequence_classification(tmp_path):
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    text = write_model_card(tmp_path, _card(tmp_path, {"merged": str(merged)})).read_text()
    assert "AutoModelForSequenceClassification.from_pretrained" in text and "apply_chat_template" not in text
    assert yaml.safe_load(text.split("---")[1])["library_name"] == "transformers"


def test_card_without_before_or_exports(tmp_path):
    card = _card(tmp_path, {})
    card["metrics"] = {"before": None, "after": {"accuracy": 0.75}}
    text = write_model_card(tmp_path, card).read_text()
    assert "| accuracy | - | 0.7500 |" in text and "## Usage" not in text


def _snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _method_card(tmp_path, name: str, exports: dict) -> str:
    card = _card(tmp_path, exports)
    card["method"] = {"name": name}
    return write_model_card(tmp_path, card).read_text()


def test_lora_card_loads_with_peft(tmp_path):
    text = _method_card(tmp_path, "lora", {"adapter": str(tmp_path / "adapter")})
    assert "PeftModel.from_pretrained" in text and "from peft import PeftModel" in text
    assert yaml.safe_load(text.split("---")[1])["library_name"] == "peft"


def test_adapter_method_card_snippet_loads_the_bottleneck_adapters(tmp_path, tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from lmforge.export import export_adapter
    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo

    torch.manual_seed(0)
    method = build_method("adapter", METHODS["adapter"].params.model_validate({"style": "houlsby"}))
    model = method.apply(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32), TaskInfo("causal_lm"))
    with torch.no_grad():
        for param in (p for p in model.parameters() if p.requires_grad):
            param.normal_(0, 0.5)
    export_adapter(method, model, tmp_path / "adapter")
    text = _method_card(tmp_path, "adapter", {"adapter": str(tmp_path / "adapter")})
    assert "PeftModel" not in text and "peft" not in yaml.safe_load(text.split("---")[1])["library_name"]
    assert "lmforge serve" in text
    (snippet,) = _snippets(text)
    scope: dict = {}
    exec(snippet, scope)  # the card's own usage code attaches the saved adapters
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.allclose(scope["model"](ids).logits, model.eval()(ids).logits, atol=1e-5)
    assert scope["tokenizer"].chat_template


def test_freeze_cards_load_through_lmforge(tmp_path, tiny_llama_dir, tiny_bert_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from lmforge.export import export_adapter
    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo

    labels = ("neg", "pos")
    task = TaskInfo("sequence_classification", 2, labels)
    pooled = build_method("freeze", METHODS["freeze"].params.model_validate({"head": "pooled", "head_hidden": 4}))
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=2, id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)})
    head = pooled.apply(base, task).eval()
    export_adapter(pooled, head, tmp_path / "pooled", task=task)
    card = _card(tmp_path, {"adapter": str(tmp_path / "pooled")})
    card["method"], card["objective"] = {"name": "freeze", "head": "pooled", "head_hidden": 4}, "classification"
    text = write_model_card(tmp_path, card).read_text()
    assert "PeftModel" not in text and "apply_chat_template" not in text  # a pooled head is a classifier
    scope: dict = {}
    exec(_snippets(text)[0], scope)
    batch = scope["tokenizer"](["good food", "bad taste here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(scope["model"](**batch).logits, head(**batch).logits, atol=1e-6)

    method = build_method("freeze", METHODS["freeze"].params.model_validate({"last_layers": 1}))
    model = method.apply(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32), TaskInfo("causal_lm"))
    trained = next(n for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        model.get_parameter(trained).add_(1.0)
    export_adapter(method, model, tmp_path / "tensors")
    card = _card(tmp_path, {"adapter": str(tmp_path / "tensors")})
    card["method"], card["base_model"] = {"name": "freeze", "last_layers": 1}, str(tiny_llama_dir)
    text = write_model_card(tmp_path, card).read_text()
    assert "PeftModel" not in text
    scope = {}
    exec(_snippets(text)[0], scope)
    assert type(scope["model"]).__name__ == "LlamaForCausalLM"
    assert torch.equal(scope["model"].get_parameter(trained), model.get_parameter(trained))


def test_a_model_trained_over_an_earlier_export_names_its_lineage(tmp_path):
    """Domain adaptation, then instruction tuning over runs/dapt/export/merged: the base is that folder (the adapter
    needs those exact weights), and the card says what it was itself fine-tuned from."""
    from lmforge.model.source import lmforge_parent

    parent = tmp_path / "dapt" / "export" / "merged"
    parent.mkdir(parents=True)
    write_model_card(parent, {**_card(tmp_path, {}), "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"}, "merged")
    assert lmforge_parent(parent) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "README.md").write_text("---\nbase_model: x/y\ntags: [mine]\n---\n# not lmforge's\n")
    assert lmforge_parent(tmp_path / "other") is None and lmforge_parent(tmp_path / "nowhere") is None
    card = {**_card(tmp_path, {}), "base_model": str(parent), "base_parent": lmforge_parent(parent)}
    text = write_model_card(tmp_path, card).read_text()
    assert yaml.safe_load(text.split("---")[1])["base_model"] == str(parent)
    assert f"- **base model**: `{parent}`, itself fine-tuned with lmforge from `HuggingFaceTB/SmolLM2-135M-Instruct`" in text
