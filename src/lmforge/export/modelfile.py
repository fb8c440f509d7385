"""An Ollama ``Modelfile`` beside a GGUF export: FROM the file, the chat TEMPLATE, SYSTEM, stop tokens.

Ollama templates are Go templates, not Jinja. The common ChatML case (SmolLM2, Qwen, many
fine-tunes) is recognised by *rendering* the tokenizer's Jinja template on probe conversations
and comparing with ChatML, not by matching its source text, and is translated to Ollama's ChatML
template; a default system prompt the Jinja template injects becomes ``SYSTEM``. Other templates
get no TEMPLATE line: Ollama then uses the ``tokenizer.chat_template`` stored in the GGUF when it
recognises it (the Modelfile says so in a comment). Stop tokens are always written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lmforge.atomic import atomic_write_text
from lmforge.evaluate.generate import template_end_of_turn

CHATML_OLLAMA = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

_PROBE = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
          {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}]


def _chatml(messages: list[dict]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def chatml_default_system(tokenizer: Any) -> tuple[bool, str | None]:
    """(is the chat template ChatML?, the system prompt it adds when a conversation has none)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return False, None
    try:
        full = tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True)
        bare = tokenizer.apply_chat_template(_PROBE[1:2], tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that rejects the probe is not plain ChatML
        return False, None
    if full != _chatml(_PROBE):
        return False, None
    user_only = _chatml(_PROBE[1:2])
    if bare == user_only:
        return True, None
    head = "<|im_start|>system\n"
    if bare.startswith(head) and bare.endswith("<|im_end|>\n" + user_only):
        return True, bare[len(head):-len("<|im_end|>\n" + user_only)]
    return False, None


def stop_tokens(tokenizer: Any) -> list[str]:
    """Stop strings for Ollama: the template's end-of-turn token, eos, and ``<|im_start|>`` for ChatML."""
    stops = [template_end_of_turn(tokenizer), getattr(tokenizer, "eos_token", None)]
    if chatml_default_system(tokenizer)[0]:
        stops.append("<|im_start|>")
    return list(dict.fromkeys(s for s in stops if s))


def render_modelfile(gguf_name: str, tokenizer: Any, parameters: Mapping[str, Any] | None = None) -> str:
    """The Modelfile text for ``./<gguf_name>`` (a file in the same folder)."""
    is_chatml, system = chatml_default_system(tokenizer)
    lines = [f"FROM ./{gguf_name}", ""]
    if is_chatml:
        lines += [f'TEMPLATE """{CHATML_OLLAMA}"""', ""]
        if system:
            lines += [f'SYSTEM """{system}"""', ""]
    else:
        lines += ["# No TEMPLATE: this chat template is not ChatML, so it was not translated to Ollama's",
                  "# Go syntax. Ollama uses the tokenizer.chat_template stored in the GGUF when it knows it.", ""]
    lines += [f"PARAMETER stop {_quote(s)}" for s in stop_tokens(tokenizer)]
    for key, value in (parameters or {}).items():
        lines.append(f"PARAMETER {key} {value}")
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: str | Path, tokenizer: Any, parameters: Mapping[str, Any] | None = None) -> Path:
    """Write ``Modelfile`` beside ``gguf_path`` (atomically); return its path.

    Use: ``ollama create NAME -f <folder>/Modelfile`` then ``ollama run NAME``.
    """
    gguf_path = Path(gguf_path)
    return atomic_write_text(gguf_path.parent / "Modelfile", render_modelfile(gguf_path.name, tokenizer, parameters))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
