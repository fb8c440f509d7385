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
    front = {"base_model": str(card["base_model"]), "library_name": "peft" if "adapter" in exports else "transformers",
             "tags": ["lmforge", method_name, str(card.get("objective", ""))]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {Path(str(card['base_model'])).name}, fine-tuned with lmforge ({method_name})", "",
             f"- **base model**: `{card['base_model']}`",
             f"- **method**: {method_name}" + (f" ({_params(method)})" if method else ""),
             f"- **objective**: {card.get('objective', '?')}", ""]
    lines += _data_section(card.get("data_files") or [])
    lines += _metrics_section(card.get("metrics") or {})
    lines += _usage_section(card["base_model"], exports, head)
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


def _usage_section(base_model: str, exports: Mapping[str, str], head: str) -> list[str]:
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
        lines += ["Adapter over the base model (peft):", "", "```python", "from peft import PeftModel",
                  f"from transformers import {auto}, AutoTokenizer", "",
                  f"base = {auto}.from_pretrained({str(base_model)!r})",
                  f"model = PeftModel.from_pretrained(base, {str(exports['adapter'])!r})",
                  f"tokenizer = AutoTokenizer.from_pretrained({str(base_model)!r})", "```", ""]
    if head != "sequence_classification":
        lines += ["Chat: render prompts with `tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.", ""]
    return lines


def _head_of(exports: Mapping[str, str]) -> str:
    """"sequence_classification" when an exported folder says so, else "causal_lm"."""
    merged = Path(exports["merged"]) / "config.json" if "merged" in exports else None
    if merged is not None and merged.is_file():
        archs = json.loads(merged.read_text()).get("architectures") or []
        if any(a.endswith("ForSequenceClassification") for a in archs):
            return "sequence_classification"
    adapter = Path(exports["adapter"]) / "adapter_config.json" if "adapter" in exports else None
    if adapter is not None and adapter.is_file():
        if json.loads(adapter.read_text()).get("task_type") == "SEQ_CLS":
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
