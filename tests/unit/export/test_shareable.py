"""Shareable exports: the base is named by its upstream hub id (the local folder kept as a hint),
lmforge's card replaces peft's blank one, classifier exports carry their label names."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from lmforge.config.schema import ModelConfig
from lmforge.model.source import MINILM, SMOLLM2, ResolvedModel, upstream_id


def test_upstream_ids(tmp_path, tiny_llama_dir):
    builtin = ResolvedModel(tmp_path, "SmolLM2-135M-Instruct.Q4_1.gguf", SMOLLM2)
    assert upstream_id(ModelConfig(name=SMOLLM2), builtin) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert upstream_id(ModelConfig(name=MINILM), ResolvedModel(tmp_path, None, MINILM)) == \
        "sentence-transformers/all-MiniLM-L6-v2"
    hub = ResolvedModel(tmp_path, None, None)
    assert upstream_id(ModelConfig(name="acme/tiny-llama"), hub) == "acme/tiny-llama"
    cached = tmp_path / "hub" / "models--acme--tiny-llama" / "snapshots" / "0123abc"
    cached.mkdir(parents=True)
    assert upstream_id(ModelConfig(name=str(cached)), hub) == "acme/tiny-llama"
    assert upstream_id(ModelConfig(name=str(tiny_llama_dir)), hub) is None  # a plain local folder


QA = [("what is the capital of france", "paris"), ("hello", "hi thanks"), ("what is a bond", "a loan"),
      ("is this food good", "yes it is great")] * 3
REVIEWS = [("the food is good i love it", "great"), ("bad taste i hate it", "other"),
           ("what a great price", "great"), ("terrible product", "other")] * 3


def _train(tmp_path: Path, model_dir: Path, *, classify: bool) -> Path:
    from lmforge.config import load_config
    from lmforge.pipeline import run_train

    data = tmp_path / "data.jsonl"
    if classify:
        data.write_text("".join(json.dumps({"text": f"{t} {i}", "label": y}) + "\n" for i, (t, y) in enumerate(REVIEWS)))
        section = f"data: {{format: classification, train: {data}, split: {{validation: 0.2, test: 0.2}}, max_length: 32}}\n"
    else:
        data.write_text("".join(json.dumps({"instruction": f"{q} {i}", "output": a}) + "\n" for i, (q, a) in enumerate(QA)))
        section = f"data: {{format: instruction, train: {data}, split: {{validation: 0.2, test: 0.2}}, max_length: 32}}\n"
    path = tmp_path / "run.yaml"
    path.write_text(
        f"run: {{name: t, output_dir: {tmp_path / 'run'}, seed: 0}}\nmodel: {{name: {model_dir}}}\n" + section
        + "method: {name: lora, r: 4}\n"
        + "train: {max_steps: 1, batch_size: 3, lr: 1.0e-2, tensorboard: false}\nruntime: {device: cpu}\n"
        + "eval: {generations: 0}\nexport: {parity_prompts: 1, merged: true}\n")
    run_train(load_config(path), say=lambda _text: None)
    return tmp_path / "run"


@pytest.fixture(scope="module")
def hub_run(tiny_llama_dir, tmp_path_factory):
    """A LoRA run whose base is a folder in the Hugging Face cache layout (upstream id acme/tiny-llama)."""
    root = tmp_path_factory.mktemp("shareable")
    snapshot = root / "hub" / "models--acme--tiny-llama" / "snapshots" / "0123abc"
    shutil.copytree(tiny_llama_dir, snapshot)
    return _train(root, snapshot, classify=False), snapshot


def test_adapter_names_its_base_by_the_upstream_id_with_the_local_folder_as_a_hint(hub_run):
    run, snapshot = hub_run
    adapter = run / "export" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "acme/tiny-llama"
    base = json.loads((adapter / "lmforge.json").read_text())["base_model"]
    assert base["id"] == "acme/tiny-llama" and Path(base["path"]) == snapshot.resolve()
    assert base["model"]["name"] == str(snapshot)


def test_peft_loads_the_shared_adapter_over_a_locally_loaded_base(hub_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lmforge.export import load_export

    run, snapshot = hub_run
    adapter = run / "export" / "adapter"
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(snapshot, dtype=torch.float32), adapter).eval()
    ours, _tokenizer = load_export(adapter)
    ids = torch.tensor([[1, 20, 30, 40, 50, 2]])
    merged = AutoModelForCausalLM.from_pretrained(run / "export" / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, ours(input_ids=ids).logits)
        assert torch.allclose(plain(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


def test_every_exported_folder_carries_lmforges_card(hub_run):
    run, snapshot = hub_run
    for folder in (run / "export", run / "export" / "adapter", run / "export" / "merged"):
        text = (folder / "README.md").read_text()
        front = yaml.safe_load(text.split("---")[1])
        merged = folder.name == "merged"  # a whole transformers model: no peft loader for files it does not hold
        assert front["base_model"] == "acme/tiny-llama" and front["library_name"] == ("transformers" if merged else "peft")
        assert front.get("base_model_relation") == {"adapter": "adapter", "merged": "finetune"}.get(folder.name)
        assert "lmforge" in front["tags"] and "fine-tuned with lmforge (lora)" in text
        assert f"trained on the local copy `{snapshot.resolve()}`" in text
        assert "PeftModel.from_pretrained(base, " in text


def test_serve_finds_the_local_base_through_the_hint(hub_run, tmp_path):
    from lmforge.config.serve import ServeConfig
    from lmforge.serve.store import resolve_target

    run, snapshot = hub_run
    adapter = run / "export" / "adapter"
    only_adapter = tmp_path / "run2"
    shutil.copytree(adapter, only_adapter / "export" / "adapter")  # a run folder without export/merged
    for target in (only_adapter, adapter):
        assert resolve_target(target, ServeConfig()).base == snapshot.resolve()
    moved = tmp_path / "moved"
    shutil.copytree(adapter, moved)  # shared without its base: the hint points nowhere here
    manifest = json.loads((moved / "lmforge.json").read_text())
    manifest["base_model"].update(path=str(tmp_path / "elsewhere"), model={"name": str(tmp_path / "elsewhere")})
    (moved / "lmforge.json").write_text(json.dumps(manifest))
    from lmforge.errors import UserError

    with pytest.raises(UserError) as err:
        resolve_target(moved, ServeConfig())
    assert "--base" in err.value.hint
    assert resolve_target(moved, ServeConfig(base_model=str(snapshot))).base == snapshot


def test_classifier_exports_carry_their_label_names(tiny_bert_dir, tmp_path):
    run = _train(tmp_path, tiny_bert_dir, classify=True)
    adapter, merged = run / "export" / "adapter", run / "export" / "merged"
    labels = ["great", "other"]
    assert json.loads((adapter / "lmforge.json").read_text())["task"] == {"head": "sequence_classification",
                                                                          "labels": labels}
    config = json.loads((merged / "config.json").read_text())
    assert config["id2label"] == {"0": "great", "1": "other"} and config["label2id"] == {"great": 0, "other": 1}
    text = (adapter / "README.md").read_text()
    snippet = next(s for s in re.findall(r"```python\n(.*?)```", text, re.S) if "PeftModel" in s)
    assert f"labels = {labels!r}" in snippet
    scope: dict = {}
    exec(snippet, scope)  # the card's peft snippet builds the classifier with its label names
    model = scope["model"].eval()
    assert model.config.id2label == {0: "great", 1: "other"}
    from transformers import AutoModelForSequenceClassification

    reference = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    batch = scope["tokenizer"](["the food is good"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, reference(**batch).logits, atol=1e-4)
