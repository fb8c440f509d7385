"""Greedy sample answers on held-out chat / instruction prompts, for the before -> after report.

Prompts are rendered exactly as training renders them (``lmforge.data.chat.render_chat``: the
tokenizer's chat template, or lmforge's built-in one), and generation stops on the tokenizer's
eos AND on the template's end-of-turn token (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for
Llama 3, ...): a chat model ends its answer with the end-of-turn token, which is not always eos.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmforge.evaluate.run import eval_mode, model_device

# End-of-turn tokens of common chat templates, used when they are in the vocabulary.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>")
_MARKER = "lmforge-end-of-turn-probe"


def sample_generations(model: nn.Module, tokenizer: Any, records: list[dict], data_cfg: Any, n: int,
                       max_new_tokens: int) -> list[dict]:
    """Greedy answers to the first ``n`` chat / instruction ``records``.

    Returns ``[{"prompt": str, "reference": str, "output": str, "tokens": int, "truncated": bool}]``:
    ``prompt`` is the prompt messages as ``role: content`` lines, ``reference`` the record's final
    assistant answer, ``output`` the model's new text (special tokens removed), ``tokens`` the tokens
    it generated and ``truncated`` whether it was cut at ``max_new_tokens`` (no stop token came).
    Deterministic.
    """
    from lmforge.data.messages import prompt_messages, reference_text

    samples = []
    for record in records[: max(n, 0)]:
        messages = prompt_messages(record, data_cfg)
        reply = generate(model, tokenizer, messages, max_new_tokens)
        samples.append({
            "prompt": "\n".join(f"{m['role']}: {m['content']}" for m in messages),
            "reference": reference_text(record, data_cfg),
            "output": reply["text"], "tokens": reply["tokens"], "truncated": reply["truncated"],
        })
    return samples


def generate_reply(model: nn.Module, tokenizer: Any, messages: list[dict], max_new_tokens: int) -> str:
    """The model's greedy reply to ``messages`` (a conversation ending before the assistant turn).

    Renders with the chat template and the generation prompt, generates at most
    ``max_new_tokens`` tokens, stops at any of :func:`stop_token_ids`, and decodes only the new
    tokens (cut at the first stop token) with ``skip_special_tokens``; surrounding whitespace
    is stripped. The model's train/eval mode is restored afterwards.
    """
    return generate(model, tokenizer, messages, max_new_tokens)["text"]


def generate(model: nn.Module, tokenizer: Any, messages: list[dict], max_new_tokens: int) -> dict:
    """:func:`generate_reply` with how it ended: ``{"text", "tokens": generated tokens before the stop
    token, "truncated": True when no stop token came within max_new_tokens}``."""
    from lmforge.data.chat import render_chat

    text = render_chat(tokenizer, messages, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model_device(model))
    stops = stop_token_ids(tokenizer, model)
    with eval_mode(model), torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=stops or None,
            pad_token_id=_pad_id(tokenizer, stops),
        )
    new = out[0, ids.shape[1]:].tolist()
    stopped = False
    for i, token in enumerate(new):
        if token in stops:
            new, stopped = new[:i], True
            break
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    return {"text": text, "tokens": len(new), "truncated": not stopped and len(new) >= max_new_tokens}


def stop_token_ids(tokenizer: Any, model: nn.Module | None = None) -> list[int]:
    """Token ids that end an assistant turn: eos (tokenizer and model generation config), the
    special token the chat template puts right after an assistant message, and the known
    end-of-turn tokens of :data:`END_OF_TURN` present in the vocabulary. Sorted, unique."""
    ids: set[int] = set()
    for value in (getattr(tokenizer, "eos_token_id", None),
                  getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        ids.update(_as_ids(value))
    vocab = tokenizer.get_vocab()
    for token in (*END_OF_TURN, template_end_of_turn(tokenizer)):
        if token and token in vocab:
            ids.add(int(vocab[token]))
    return sorted(ids)


def template_end_of_turn(tokenizer: Any) -> str | None:
    """The special token the chat template writes right after an assistant message, if any."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    from lmforge.data.chat import render_chat

    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = render_chat(tokenizer, convo)
    except Exception:  # a template may refuse this probe conversation
        return None
    at = text.find(_MARKER)
    if at < 0:
        return None
    rest = text[at + len(_MARKER):].lstrip()
    specials = sorted(getattr(tokenizer, "all_special_tokens", []) or [], key=len, reverse=True)
    return next((s for s in specials if s and rest.startswith(s)), None)


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def _pad_id(tokenizer: Any, stops: list[int]) -> int | None:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None and stops:
        pad = stops[0]
    return pad
