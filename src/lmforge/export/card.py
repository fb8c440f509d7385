"""The model card (README.md) of an export folder: provenance, config, metrics, how to load."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping

from lmforge.atomic import atomic_write_text

_CHUNK = 1 << 20
PEFT_METHODS = frozenset({"lora", "qlora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning"})


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_model_card(out_dir: str | Path, card: Mapping[str, Any]) -> Path:
    """Write ``out_dir/README.md`` atomically; return its path.

    card keys (all optional except ``base_model``):
      base_model: str; method: {"name", ...params}; objective: str;
      data_files: [{"path", "sha256"}]; config: the resolved run config (dict);
      metrics: {"before": metrics | None, "after": metrics}; exports: {"adapter"|"merged": folder};
      head: "causal_lm" | "sequence_classification" (default: read from the exported folders).
    """
    return atomic_write_text(Path(out_dir) / "README.md", render_model_card(card))


def render_model_card(card: Mapping[str, Any]) -> str:
    """The README.md text (YAML front matter for model hubs, then markdown sections)."""
    import yaml

    method = dict(card.get("method") or {})
    method_name = method.pop("name", "?")
    exports = dict(card.get("exports") or {})
    head = card.get("head") or _head_of(exports)
    peft = "adapter" in exports and method_name in PEFT_METHODS
    front = {"base_model": str(card["base_model"]), "library_name": "peft" if peft else "transformers",
             "tags": ["lmforge", method_name, str(card.get("objective", ""))]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {Path(str(card['base_model'])).name}, fine-tuned with lmforge ({method_name})", "",
             f"- **base model**: `{card['base_model']}`",
             f"- **method**: {method_name}" + (f" ({_params(method)})" if method else ""),
             f"- **objective**: {card.get('objective', '?')}", ""]
    lines += _data_section(card.get("data_files") or [])
    lines += _metrics_section(card.get("metrics") or {})
    lines += _usage_section(card["base_model"], exports, head, method_name)
    if card.get("config"):
        config = yaml.safe_dump(json.loads(json.dumps(card["config"], default=str)), sort_keys=False)
        lines += ["## Resolved config", "", "```yaml", config.rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


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


def _usage_section(base_model: str, exports: Mapping[str, str], head: str, method: str = "lora") -> list[str]:
    """How to load each export: transformers for merged, peft for peft-based methods, lmforge for
    method ``adapter`` (bottleneck adapters) and ``freeze`` (saved tensors / pooled head)."""
    if not exports:
        return []
    auto = "AutoModelForSequenceClassification" if head == "sequence_classification" else "AutoModelForCausalLM"
    lines = ["## Usage", ""]
    if "merged" in exports:
        lines += ["Merged model (plain transformers):", "", "```python",
                  f"from transformers import {auto}, AutoTokenizer", "",
                  f"model = {auto}.from_pretrained({str(exports['merged'])!r})",
                  f"tokenizer = AutoTokenizer.from_pretrained({str(exports['merged'])!r})", "```", ""]
    if "adapter" in exports:
        folder = str(exports["adapter"])
        if method in PEFT_METHODS:
            lines += ["Adapter over the base model (peft):", "", "```python", "from peft import PeftModel",
                      f"from transformers import {auto}, AutoTokenizer", "",
                      f"base = {auto}.from_pretrained({str(base_model)!r})",
                      f"model = PeftModel.from_pretrained(base, {folder!r})",
                      f"tokenizer = AutoTokenizer.from_pretrained({str(base_model)!r})", "```", ""]
        elif method == "adapter":
            lines += _bottleneck_usage(folder, head)
        elif method == "freeze":
            lines += _freeze_usage(base_model, folder, head, auto)
    if head != "sequence_classification":
        lines += ["Chat: render prompts with `tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.", ""]
    return lines


def _bottleneck_usage(folder: str, head: str) -> list[str]:
    """Method ``adapter``: unmerged bottleneck adapters, attached by lmforge over the recorded base."""
    if head == "sequence_classification":
        load = ["labels = saved['task']['labels']",
                "base = AutoModelForSequenceClassification.from_pretrained(saved['base_model_name_or_path'], "
                "num_labels=len(labels), id2label=dict(enumerate(labels)))",
                "model = method.load(base, folder, TaskInfo('sequence_classification', len(labels), tuple(labels)))"]
        auto = "AutoModelForSequenceClassification"
    else:
        load = ["base = AutoModelForCausalLM.from_pretrained(saved['base_model_name_or_path'])",
                "model = method.load(base, folder, TaskInfo('causal_lm'))"]
        auto = "AutoModelForCausalLM"
    return ["Bottleneck adapters over the base model (lmforge; they cannot be merged, peft cannot load them). "
            "Serve them with `lmforge serve RUN`, or load them in Python:", "", "```python", "import json", "",
            f"from transformers import {auto}, AutoTokenizer", "",
            "from lmforge.methods import METHODS, build_method", "from lmforge.model.task import TaskInfo", "",
            f"folder = {folder!r}",
            "saved = json.loads(open(folder + '/adapter_config.json').read())",
            "method = build_method('adapter', METHODS['adapter'].params.model_validate(saved['params']))",
            *load, "tokenizer = AutoTokenizer.from_pretrained(saved['base_model_name_or_path'])", "```", ""]


def _freeze_usage(base_model: str, folder: str, head: str, auto: str) -> list[str]:
    """Method ``freeze``: a pooled classification head, or the trained tensors copied over the base."""
    if _pooled(folder):
        return ["Pooled classification head (lmforge; not loadable by plain transformers or peft):", "", "```python",
                "from lmforge.methods.freeze.method import load_pooled_export", "",
                f"model, tokenizer = load_pooled_export({folder!r})", "```", ""]
    if head == "sequence_classification":
        return [f"The folder `{folder}` holds only the trained tensors (lmforge method freeze); load the merged "
                "export (`export.merged: true`) with transformers.", ""]
    return ["Trained tensors over the base model (lmforge method freeze):", "",
            "```python", f"from transformers import {auto}, AutoTokenizer", "",
            "from lmforge.methods import METHODS, build_method", "from lmforge.model.task import TaskInfo", "",
            f"folder = {folder!r}",
            "method = build_method('freeze', METHODS['freeze'].params())  # copies the saved tensors in",
            f"model = method.load({auto}.from_pretrained({str(base_model)!r}), folder, TaskInfo('causal_lm'))",
            f"tokenizer = AutoTokenizer.from_pretrained({str(base_model)!r})", "```", ""]


def _pooled(folder: str) -> bool:
    """True when the freeze export folder holds a pooled head (``pooled_head`` in its manifest)."""
    manifest = Path(folder) / "freeze_manifest.json"
    try:
        return manifest.is_file() and "pooled_head" in json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False


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
    if "adapter" in exports and _pooled(str(exports["adapter"])):
        return "sequence_classification"
    return "causal_lm"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if not _number(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)
