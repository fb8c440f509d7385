"""Serving a method-``adapter`` run (lmforge's bottleneck adapters, unmerged) and refusing them at run time.

The server knows no method by name: it reads the export's ``lmforge.json`` and lets the recorded
method load its weights (lmforge.export.load_export)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lmforge.config.serve import ServeConfig
from lmforge.errors import UserError
from lmforge.export import export_adapter
from lmforge.serve.store import is_export, is_peft_adapter, resolve_target
from tests.unit.serve.conftest import KEY, LiveServer, http

PROMPT = "what is the interest rate of the bank"


def _adapted(tiny_llama_dir: Path):
    """The tiny Llama with pfeiffer adapters whose weights are random (output differs from the base)."""
    from transformers import AutoModelForCausalLM

    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo

    torch.manual_seed(3)
    method = build_method("adapter", METHODS["adapter"].params.model_validate({"reduction_factor": 2}))
    model = method.apply(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32),
                         TaskInfo("causal_lm"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.normal_(0, 0.5)
    return method, model.eval()


@pytest.fixture(scope="module")
def run_dir(tiny_llama_dir, tmp_path_factory):
    """A run folder whose only export is export/adapter/ written by export_adapter (+ the greedy reference)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("runs") / "bankrun"
    method, model = _adapted(Path(tiny_llama_dir))
    export_adapter(method, model, run / "export" / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.save_pretrained(run / "export" / "adapter")
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
        base_out = base.generate(ids, max_new_tokens=8, do_sample=False)
    reference = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    base_text = tokenizer.decode(base_out[0, ids.shape[1]:], skip_special_tokens=True)
    assert reference != base_text  # the adapters change the output
    (run / "expected.json").write_text(json.dumps({"adapted": reference, "base": base_text}))
    return run


@pytest.fixture(scope="module")
def live(run_dir):
    from lmforge.serve import create_app

    cfg = ServeConfig(api_keys=[KEY], log={"enabled": False},
                      limits={"max_tokens": 16, "max_batch_size": 4, "batch_wait_ms": 5})
    server = LiveServer(create_app(run_dir, cfg, window_file=run_dir / "traffic.jsonl"))
    yield server
    server.stop()


def _greedy(live, model: str) -> dict:
    status, body = http("POST", live.url + "/v1/completions",
                        {"model": model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0})
    assert status == 200, body
    return body["choices"][0]


def test_export_records_the_method_base_model_and_task(run_dir, tiny_llama_dir):
    folder = run_dir / "export" / "adapter"
    manifest = json.loads((folder / "lmforge.json").read_text())
    assert manifest["method"]["name"] == "adapter" and manifest["method"]["params"]["reduction_factor"] == 2
    assert Path(manifest["base_model"]["path"]) == Path(tiny_llama_dir)
    assert manifest["task"] == {"head": "causal_lm", "labels": None}
    saved = json.loads((folder / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == manifest["base_model"]["id"]
    assert is_export(folder) and not is_peft_adapter(folder)


def test_resolve_target_serves_the_run_under_its_name(run_dir, tiny_llama_dir, tmp_path):
    t = resolve_target(run_dir, ServeConfig())
    assert t.name == "bankrun" and not t.adapters and t.export == (run_dir / "export" / "adapter").resolve()
    assert t.base == Path(tiny_llama_dir)
    override = tmp_path / "base-copy"
    shutil.copytree(tiny_llama_dir, override)
    assert resolve_target(run_dir, ServeConfig(base_model=str(override))).base == override
    with pytest.raises(UserError, match="extra PEFT adapters"):
        resolve_target(run_dir, ServeConfig(adapters={"x": "adapter"}))


def test_missing_base_path_asks_for_base(run_dir, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(run_dir / "export" / "adapter", folder)
    manifest = json.loads((folder / "lmforge.json").read_text())  # a base that moved away
    manifest["base_model"].update(path=str(tmp_path / "gone"), model={"name": str(tmp_path / "gone")})
    (folder / "lmforge.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError) as err:
        resolve_target(folder, ServeConfig())
    assert "base_model" in err.value.hint


def test_completions_equal_the_adapted_model_generating_directly(live, run_dir):
    expected = json.loads((run_dir / "expected.json").read_text())
    status, body = http("GET", live.url + "/v1/models")
    assert status == 200 and [m["id"] for m in body["data"]] == ["bankrun"]
    choice = _greedy(live, "bankrun")
    assert choice["text"] == expected["adapted"] and choice["text"] != expected["base"]


def test_generation_stops_at_end_of_turn(live):
    stop_ids = live.state.engine.stop_ids
    im_end = live.state.store.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in stop_ids


def test_bottleneck_adapters_cannot_be_added_at_run_time(live, run_dir, tiny_llama_dir):
    status, body = http("POST", live.url + "/admin/adapters", {"name": "again", "path": "adapter"})
    assert status == 400 and "only PEFT adapters" in body["error"]["message"]
    assert live.state.store.names() == ["bankrun"]


def test_base_only_still_serves(tiny_llama_dir, run_dir):
    from lmforge.serve import create_app

    expected = json.loads((run_dir / "expected.json").read_text())
    cfg = ServeConfig(api_keys=[KEY], model_name="plain", log={"enabled": False}, limits={"max_tokens": 16})
    server = LiveServer(create_app(Path(tiny_llama_dir), cfg, window_file=run_dir / "traffic2.jsonl"))
    try:
        assert _greedy(server, "plain")["text"] == expected["base"]
    finally:
        server.stop()


def test_classification_run_is_served_as_a_classifier(tiny_bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo
    from lmforge.serve.store import ModelStore

    labels = ("neg", "pos", "mixed")
    torch.manual_seed(4)
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=3, id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)})
    method = build_method("adapter", METHODS["adapter"].params.model_validate({"reduction_factor": 4}))
    model = method.apply(base, TaskInfo("sequence_classification", 3, labels))
    with torch.no_grad():
        for param in (p for p in model.parameters() if p.requires_grad):
            param.normal_(0, 0.5)
    export_adapter(method, model.eval(), tmp_path / "clfrun" / "export" / "adapter")  # task read from the model
    saved = json.loads((tmp_path / "clfrun" / "export" / "adapter" / "lmforge.json").read_text())
    assert saved["task"] == {"head": "sequence_classification", "labels": list(labels)}
    store = ModelStore(resolve_target(tmp_path / "clfrun", ServeConfig()))
    assert store.kind == "classifier" and store.name == "clfrun"
    assert [store.model.config.id2label[i] for i in range(3)] == list(labels)
    batch = store.tokenizer(["the bank raised rates"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(store.model(**batch).logits, model(**batch).logits, atol=1e-5)
