"""Adding a data format or a method touches one file or folder plus one registration line.

Here both live in this test module and are registered from inside the test (no line anywhere in
lmforge names them): a ``qa`` data format (kind messages, fields question / answer) and a ``norm``
method that trains only the model's final normalisation weights. They run through the pipeline
functions the CLI calls (validate, train, export, re-export) and through the OpenAI-compatible
server (one chat completion from the merged export, one from the method's own export folder,
which the server loads through the method's ``load``), on the tiny Llama. The registries are
restored afterwards. If this needs an edit elsewhere in lmforge, a hook is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.data.formats import FORMATS, FormatSpec, register_format
from lmforge.errors import UserError
from lmforge.methods import METHODS, MethodParams, MethodSpec, register_method
from lmforge.methods.base import MethodBase
from lmforge.model.task import TaskInfo

# --- the new data format: one spec + one register call -----------------------------------------


def read_qa(row: dict, where: str, data_cfg) -> dict:
    """A row -> ``{"question", "answer"}`` (columns mapped by data.columns), UserError naming file:line."""
    record = {}
    for field in ("question", "answer"):
        value = row.get(data_cfg.column(field))
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"'{data_cfg.column(field)}' must be a non-empty string", where=where)
        record[field] = value
    return record


QA = FormatSpec("qa", "messages", ("question", "answer"), ("question", "answer"), ("question", "answer"), read_qa,
                messages=lambda r: [{"role": "user", "content": r["question"]},
                                    {"role": "assistant", "content": r["answer"]}],
                summary="question -> answer; the answer is trained")


# --- the new method: params + implementation + one register call -------------------------------


class NormParams(MethodParams):
    """Train only the final normalisation layer (``*norm.weight`` outside the transformer blocks)."""

    bias_too: bool = Field(default=False, description="Also train a final norm bias where there is one.")


WEIGHTS = "norm.safetensors"


class NormMethod(MethodBase):
    """Every hook but apply / save / load / merge keeps MethodBase's default (reference, fit, usage ...)."""

    def trained(self, model: nn.Module) -> list[str]:
        suffixes = ("norm.weight", "norm.bias") if self.params.bias_too else ("norm.weight",)
        return [n for n, _ in model.named_parameters() if n.endswith(suffixes) and ".layers." not in n]

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        names = set(self.trained(model))
        for name, param in model.named_parameters():
            param.requires_grad_(name in names)
        return model

    def save(self, model: nn.Module, out_dir: Path) -> None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(Path(out_dir) / WEIGHTS))

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        state = load_file(str(Path(in_dir) / WEIGHTS))
        with torch.no_grad():
            for name, tensor in state.items():
                base.get_parameter(name).copy_(tensor)
        return base.eval()

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # the trained weights are the model's own


NORM = MethodSpec(name="norm", params=NormParams, factory=f"{__name__}:NormMethod",
                  trains="the final normalisation weights", mergeable=True, default_lr=1e-3)


@pytest.fixture
def registered():
    """The format and the method registered for one test; the registries restored afterwards."""
    register_format(QA)
    register_method(NORM)
    try:
        yield
    finally:
        FORMATS.pop("qa")
        METHODS.pop("norm")


ROWS = [{"q": "what is the capital of france", "a": "paris"}, {"q": "hello", "a": "hi thanks"},
        {"q": "what is a bond", "a": "a loan"}, {"q": "is this food good", "a": "yes it is great"}] * 3


def _config(tmp_path, model_dir) -> Path:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    path = tmp_path / "run.yaml"
    path.write_text(
        f"run: {{name: t, output_dir: {tmp_path / 'run'}, seed: 0}}\nmodel: {{name: {model_dir}}}\n"
        f"data:\n  format: qa\n  train: {data}\n  columns: {{question: q, answer: a}}\n  split: {{validation: 0.2, test: 0.2}}\n"
        "  max_length: 32\nmethod: {name: norm, bias_too: false}\n"
        "train: {max_steps: 2, batch_size: 3, lr: 0.05, tensorboard: false}\nruntime: {device: cpu}\n"
        "eval: {generations: 1, max_new_tokens: 4}\nexport: {parity_prompts: 1}\n")
    return path


def _chat(folder: Path, tmp_path: Path, name: str) -> dict:
    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app
    from tests.unit.serve.conftest import KEY, LiveServer, http

    # float32: serve.dtype auto would serve bf16 weights on a CPU with native bf16, and the caller compares weights
    cfg = ServeConfig(api_keys=[KEY], model_name=name, dtype="float32", log={"enabled": False},
                      limits={"max_tokens": 8})
    server = LiveServer(create_app(folder, cfg, window_file=tmp_path / f"{name}.jsonl"))
    try:
        status, body = http("POST", server.url + "/v1/chat/completions",
                            {"model": name, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4,
                             "temperature": 0})
        return {"status": status, "body": body, "model": server.state.store.model}
    finally:
        server.stop()


def test_a_format_and_a_method_registered_here_validate_train_export_and_serve(registered, tiny_llama_dir, tmp_path):
    from lmforge.config import load_config
    from lmforge.pipeline import describe_methods, run_export, run_train, run_validate

    path = _config(tmp_path, tiny_llama_dir)
    assert ": ok" in run_validate(path)  # plan: format known, columns map to its fields, method params typed
    assert "norm\n  trains:   the final normalisation weights" in describe_methods()

    report = run_train(load_config(path), say=lambda _text: None)
    assert report["train"]["steps"] == 2
    assert report["parameters"]["trainable"] == 32  # the tiny Llama's final RMSNorm (hidden 32)
    assert report["data"]["format"] == "qa" and report["samples"]  # generative: sample answers were made
    run = tmp_path / "run"
    export = run / "export"
    trained = load_file(str(export / "adapter" / WEIGHTS))
    assert list(trained) == ["model.norm.weight"] and not torch.all(trained["model.norm.weight"] == 1.0)
    manifest = json.loads((export / "adapter" / "lmforge.json").read_text())
    assert manifest["method"] == {"name": "norm", "params": {"bias_too": False}}
    assert json.loads((export / "merged" / "parity.json").read_text())["passed"]
    card = (export / "README.md").read_text()
    assert "lmforge method `norm`" in card and "load_export" in card  # MethodBase's default usage text

    merged = _chat(run, tmp_path, "t")  # the run folder with a merged export: plain transformers
    assert merged["status"] == 200, merged["body"]
    assert torch.equal(merged["model"].get_parameter("model.norm.weight"), trained["model.norm.weight"])

    run_export(str(run), ["export.merged=false"], say=lambda _text: None)  # re-export: the adapter folder only
    assert not (export / "merged").exists() and (export / "adapter" / WEIGHTS).is_file()

    served = _chat(run, tmp_path, "t")  # now the method's export folder, loaded by NormMethod.load
    assert served["status"] == 200, served["body"]
    assert served["body"]["choices"][0]["message"]["role"] == "assistant"
    assert torch.equal(served["model"].get_parameter("model.norm.weight"), trained["model.norm.weight"])


def test_the_registries_are_restored():
    assert "qa" not in FORMATS and "norm" not in METHODS
