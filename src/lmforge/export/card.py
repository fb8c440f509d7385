"""The model card (README.md) of an export folder: provenance, config, metrics, how to load."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping

from lmforge.atomic import atomic_write_text

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_model_card(out_dir: str | Path, card: Mapping[str, Any], folder: str = "export") -> Path:
    """Write ``out_dir/README.md`` atomically; return its path. ``folder``: what ``out_dir`` holds, for the hub's
    metadata (:func:`render_model_card`): "adapter", "merged", or "export" (the folder around both).

    card keys (all optional except ``base_model``):
      base_model: str, the upstream hub id where there is one (else a path); base_model_path: the local
      folder the run loaded (a hint); base_gguf: the GGUF file the base was converted from; base_parent: what the
      base was itself fine-tuned from, when it is an lmforge export;
      method: {"name", ...params}; objective: str;
      data_files: [{"path", "sha256"}]; config: the resolved run config (dict);
      metrics: {"before": metrics | None, "after": metrics}; exports: {"adapter"|"merged": folder};
      head: "causal_lm" | "sequence_classification" (default: read from the exported folders);
      labels: the class names of a classifier, in id order.
    """
    return atomic_write_text(Path(out_dir) / "README.md", render_model_card(card, folder))


def render_model_card(card: Mapping[str, Any], folder: str = "export") -> str:
    """The README.md text (YAML front matter for model hubs, then markdown sections).

    The front matter describes the folder the card is in: an adapter folder is loaded with the method's library
    (``library_name: peft``, ``base_model_relation: adapter``), a merged folder is a whole transformers model
    (``base_model_relation: finetune``): a hub reading the merged folder's card as an adapter's would offer a
    loader for files it does not hold. The export folder around both names the adapter's library when there is
    one."""
    import yaml

    method = dict(card.get("method") or {})
    method_name = method.pop("name", "?")
    exports = dict(card.get("exports") or {})
    head = card.get("head") or _head_of(exports)
    usage = adapter_usage(card, exports, head)
    library = "transformers" if folder == "merged" or usage is None else usage.library
    front = {"base_model": str(card["base_model"]), "library_name": library,
             **({"base_model_relation": {"adapter": "adapter", "merged": "finetune"}[folder]}
                if folder in ("adapter", "merged") else {}),
             "tags": ["lmforge", method_name, str(card.get("objective", ""))]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {Path(str(card['base_model'])).name}, fine-tuned with lmforge ({method_name})", "",
             f"- **base model**: `{card['base_model']}`" + _local_copy(card) + _parent(card),
             f"- **method**: {method_name}" + (f" ({_params(method)})" if method else ""),
             f"- **objective**: {card.get('objective', '?')}", ""]
    lines += _data_section(card.get("data_files") or [])
    lines += _metrics_section(card.get("metrics") or {})
    lines += _usage_section(exports, head, usage)
    if card.get("config"):
        config = yaml.safe_dump(json.loads(json.dumps(card["config"], default=str)), sort_keys=False)
        lines += ["## Resolved config", "", "```yaml", config.rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _local_copy(card: Mapping[str, Any]) -> str:
    """`` (trained on the local copy `path`, converted from `file.gguf`)`` when the run loaded the base
    from somewhere other than its id."""
    path, gguf = card.get("base_model_path"), card.get("base_gguf")
    if not path or str(path) == str(card["base_model"]):
        return ""
    return f" (trained on the local copy `{path}`" + (f", converted from `{gguf}`" if gguf else "") + ")"


def _parent(card: Mapping[str, Any]) -> str:
    """``, itself fine-tuned with lmforge from `X``` when the base is an earlier lmforge export."""
    return f", itself fine-tuned with lmforge from `{card['base_parent']}`" if card.get("base_parent") else ""


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _data_section(files: list) -> list[str]:
    if not files:
        return []
    lines = ["## Training data", "", "| file | sha256 |", "|---|---|"]
    lines += [f"| `{f['path']}` | `{f['sha256']}` |" for f in files]
    return lines + [""]


def _metrics_section(metrics: Mapping[str, Any]) -> list[str]:
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    names = [k for k in after if _number(after[k])] + [k for k in before if _number(before[k]) and k not in after]
    if not names:
        return []
    lines = ["## Metrics (held-out data)", "", "| metric | before | after |", "|---|---|---|"]
    lines += [f"| {n} | {_cell(before.get(n))} | {_cell(after.get(n))} |" for n in names]
    return lines + [""]


def _usage_section(exports: Mapping[str, str], head: str, usage) -> list[str]:
    """How to load each export: transformers for the merged model; for the adapter folder, what the
    run's method says (its ``usage`` hook)."""
    if not exports:
        return []
    auto = "AutoModelForSequenceClassification" if head == "sequence_classification" else "AutoModelForCausalLM"
    lines = ["## Usage", ""]
    if "merged" in exports:
        lines += ["Merged model (plain transformers):", "", "```python",
                  f"from transformers import {auto}, AutoTokenizer", "",
                  f"model = {auto}.from_pretrained({str(exports['merged'])!r})",
                  f"tokenizer = AutoTokenizer.from_pretrained({str(exports['merged'])!r})", "```", ""]
    if usage is not None:
        lines += usage.lines
    if head != "sequence_classification":
        lines += ["Chat: render prompts with `tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.", ""]
    return lines


def adapter_usage(card: Mapping[str, Any], exports: Mapping[str, str], head: str):
    """The run's method's :meth:`~lmforge.methods.base.Method.usage` for the exported adapter folder,
    or None (no adapter folder, or a method that is not registered here)."""
    from lmforge.methods import METHODS, build_method
    from lmforge.model.task import TaskInfo

    params = dict(card.get("method") or {})
    name = params.pop("name", None)
    if "adapter" not in exports or name not in METHODS:
        return None
    method = build_method(name, METHODS[name].params.model_validate(params))
    labels = tuple(card.get("labels") or ()) or None
    task = TaskInfo(head, len(labels) if labels else None, labels)
    return method.usage(str(exports["adapter"]), str(card["base_model"]), task)


def _head_of(exports: Mapping[str, str]) -> str:
    """"sequence_classification" when an exported folder says so, else "causal_lm"."""
    merged = Path(exports["merged"]) / "config.json" if "merged" in exports else None
    if merged is not None and merged.is_file():
        archs = json.loads(merged.read_text()).get("architectures") or []
        if any(a.endswith("ForSequenceClassification") for a in archs):
            return "sequence_classification"
    adapter = Path(exports["adapter"]) / "adapter_config.json" if "adapter" in exports else None
    if adapter is not None and adapter.is_file():
        saved = json.loads(adapter.read_text())
        if saved.get("task_type") == "SEQ_CLS" or (saved.get("task") or {}).get("head") == "sequence_classification":
            return "sequence_classification"
    manifest = Path(exports["adapter"]) / "lmforge.json" if "adapter" in exports else None
    if manifest is not None and manifest.is_file():
        return (json.loads(manifest.read_text()).get("task") or {}).get("head") or "causal_lm"
    return "causal_lm"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if not _number(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)
