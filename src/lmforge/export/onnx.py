"""Export a sequence-classification encoder (BERT, MiniLM, ...) to ONNX, run by onnxruntime.

The folder holds ``model.onnx`` (inputs: the tokenizer's ``input_ids``, ``attention_mask`` and,
for BERT-like models, ``token_type_ids``, all int64 [batch, sequence] with dynamic batch and
sequence axes; output ``logits`` float32 [batch, num_labels]), ``config.json`` (``id2label``)
and the tokenizer files, so a serving stack needs no lmforge and no torch.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from lmforge.atomic import atomic_dir
from lmforge.errors import UserError

OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _LogitsOnly(nn.Module):
    """The classifier as a function of positional int64 tensors -> logits (what ONNX traces)."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors))).logits


def input_names(tokenizer: Any) -> tuple[str, ...]:
    """The model inputs the ONNX graph takes, in order (the tokenizer's, among ``_INPUTS``)."""
    names = set(getattr(tokenizer, "model_input_names", None) or _INPUTS[:2])
    return tuple(n for n in _INPUTS if n in names or n in _INPUTS[:2])


def export_onnx(model: nn.Module, tokenizer: Any, out_dir: str | Path, *, opset: int = OPSET) -> Path:
    """Write ``model`` (a transformers ``*ForSequenceClassification``) as ONNX into ``out_dir``.

    Traced with torch.onnx's TorchScript exporter (``dynamo=False``: the dynamo exporter needs
    onnxscript) at opset ``opset`` (>= 17). The model is exported in fp32 eval mode; it is not
    modified (a deep copy is exported). The folder appears whole or not at all; returns it.
    """
    import copy
    import warnings

    archs = getattr(getattr(model, "config", None), "architectures", None) or [type(model).__name__]
    if not any(a.endswith("ForSequenceClassification") for a in archs) and not type(model).__name__.endswith(
            "ForSequenceClassification"):
        raise UserError(f"ONNX export supports sequence-classification encoders, not {type(model).__name__}",
                        where="export.onnx", hint="export causal LMs as merged safetensors or GGUF")
    if opset < 17:
        raise UserError(f"ONNX opset {opset} is too old", where="export.onnx", hint="use opset 17 or newer")
    names = input_names(tokenizer)
    sample = tokenizer(["the product is good", "bad"], padding=True, return_tensors="pt")
    args = tuple(sample[n] if n in sample else torch.zeros_like(sample["input_ids"]) for n in names)
    wrapped = _LogitsOnly(copy.deepcopy(model).float().eval(), names)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp, torch.no_grad(), warnings.catch_warnings():
        # Tracing notices (Python values taken as constants, opset-17 index lowering) are not the user's to act on:
        # the parity check runs the exported graph on held-out inputs of other shapes against the model.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(wrapped, args, str(tmp / "model.onnx"), input_names=list(names), output_names=["logits"],
                          dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


class OnnxClassifier:
    """``model.onnx`` in an onnxruntime CPU session, called like a transformers classifier:
    ``clf(input_ids=..., attention_mask=..., token_type_ids=...)`` (torch or numpy int tensors)
    -> object with ``.logits`` (float32 torch tensor [batch, num_labels])."""

    def __init__(self, path: str | Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, **inputs: Any) -> SimpleNamespace:
        feed = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None:  # e.g. token_type_ids not passed: BERT's default is all zeros
                value = torch.zeros_like(torch.as_tensor(inputs["input_ids"]))
            feed[name] = torch.as_tensor(value).to(torch.int64).numpy()
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def load_onnx(out_dir: str | Path) -> tuple[OnnxClassifier, Any]:
    """``(OnnxClassifier, tokenizer)`` read back from an :func:`export_onnx` folder."""
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    return OnnxClassifier(out_dir / "model.onnx"), AutoTokenizer.from_pretrained(out_dir)


def verify_onnx(reference_model: nn.Module, reference_tokenizer: Any, out_dir: str | Path, prompts: list[str], *,
                report_path: str | Path | None = None) -> Any:
    """Parity of the ONNX folder (onnxruntime) with the reference classifier at ``TOLERANCES["onnx"]``;
    writes ``report_path`` (default ``out_dir/parity.json``); returns the ParityResult or raises ParityError."""
    from lmforge.export.parity import TOLERANCES, check_parity

    tol, out_dir = TOLERANCES["onnx"], Path(out_dir)
    return check_parity(reference_model, reference_tokenizer, lambda: load_onnx(out_dir), prompts,
                        atol=tol.atol, rtol=tol.rtol, fmt="onnx", report_path=report_path or out_dir / "parity.json")
