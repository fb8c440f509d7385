"""Greedy answers on held-out chat / instruction prompts, for the before -> after report, the
generation metrics, compare and the forgetting check.

Prompts are rendered exactly as training renders them (``lmforge.data.chat.render_chat``: the
tokenizer's chat template, or lmforge's built-in one), and generation stops on the tokenizer's
eos AND on the template's end-of-turn token (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for
Llama 3, ...): a chat model ends its answer with the end-of-turn token, which is not always eos.
All prompts go through lmforge's one generation engine (:func:`lmforge.model.generate.generate_tokens`):
batched, with a KV cache.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from torch import nn

from lmforge.model.generate import END_OF_TURN, GREEDY, Sampling, generate_tokens, stop_token_ids, template_end_of_turn

__all__ = ["END_OF_TURN", "BATCH_SIZE", "generate", "generate_outputs", "generate_replies", "generate_reply",
           "sample_generations", "stop_token_ids", "template_end_of_turn"]

BATCH_SIZE = 8  # prompts decoded together; on CPU a batch of 8 costs ~2-3x one prompt per step


def sample_generations(model: nn.Module, tokenizer: Any, records: list[dict], data_cfg: Any, n: int,
                       max_new_tokens: int, batch_size: int = BATCH_SIZE, sampling: Sampling = GREEDY) -> list[dict]:
    """Greedy answers to the first ``n`` chat / instruction ``records`` with distinct prompts.

    Returns ``[{"prompt": str, "reference": str, "output": str, "tokens": int, "truncated": bool}]``:
    ``prompt`` is the prompt messages as ``role: content`` lines, ``reference`` the record's final
    assistant answer, ``output`` the model's new text (special tokens removed), ``tokens`` the tokens
    it generated and ``truncated`` whether it was cut at ``max_new_tokens`` (no stop token came).
    Deterministic.
    """
    from lmforge.data.messages import prompt_messages, reference_text

    chosen, conversations, seen = [], [], set()
    for record in records:  # the first n distinct prompts: a repeated prompt would only repeat its answer
        if len(chosen) >= n:
            break
        messages = prompt_messages(record, data_cfg)
        key = json.dumps(messages, sort_keys=True)
        if key not in seen:
            seen.add(key)
            chosen.append(record)
            conversations.append(messages)
    replies = generate_outputs(model, tokenizer, conversations, max_new_tokens, batch_size=batch_size, sampling=sampling)
    return [{"prompt": "\n".join(f"{m['role']}: {m['content']}" for m in messages),
             "reference": reference_text(record, data_cfg),
             "output": reply["text"], "tokens": reply["tokens"], "truncated": reply["truncated"]}
            for record, messages, reply in zip(chosen, conversations, replies)]


def generate_outputs(model: nn.Module, tokenizer: Any, conversations: Sequence[list[dict]], max_new_tokens: int,
                     batch_size: int = BATCH_SIZE, sampling: Sampling = GREEDY) -> list[dict]:
    """The model's greedy reply to each conversation (each ending before the assistant turn), with how
    it ended: ``[{"text", "tokens": generated tokens before the stop token, "truncated": True when no
    stop token came within max_new_tokens}]``.

    Renders with the chat template and the generation prompt, generates at most
    ``max_new_tokens`` tokens per reply (batches of ``batch_size``, KV cache), stops at any of
    :func:`stop_token_ids`, and decodes only the new tokens with ``skip_special_tokens``;
    surrounding whitespace is stripped. The model's train/eval mode is restored afterwards.
    """
    from lmforge.data.chat import render_chat

    prompts = [tokenizer(render_chat(tokenizer, list(messages), add_generation_prompt=True),
                         add_special_tokens=False)["input_ids"] for messages in conversations]
    stops = stop_token_ids(tokenizer, model)
    results = generate_tokens(model, prompts, max_new_tokens=max_new_tokens, stop_ids=stops,
                              pad_id=_pad_id(tokenizer, stops), batch_size=batch_size, sampling=sampling)
    return [{"text": tokenizer.decode(r.tokens, skip_special_tokens=True).strip(), "tokens": len(r.tokens),
             "truncated": r.stop_token is None and len(r.tokens) >= max_new_tokens} for r in results]


def generate_replies(model: nn.Module, tokenizer: Any, conversations: Sequence[list[dict]], max_new_tokens: int,
                     batch_size: int = BATCH_SIZE) -> list[str]:
    """Only the texts of :func:`generate_outputs`."""
    return [r["text"] for r in generate_outputs(model, tokenizer, conversations, max_new_tokens, batch_size)]


def generate_reply(model: nn.Module, tokenizer: Any, messages: list[dict], max_new_tokens: int) -> str:
    """The model's greedy reply to one conversation (see :func:`generate_outputs`)."""
    return generate(model, tokenizer, messages, max_new_tokens)["text"]


def generate(model: nn.Module, tokenizer: Any, messages: list[dict], max_new_tokens: int) -> dict:
    """:func:`generate_outputs` for one conversation: ``{"text", "tokens", "truncated"}``."""
    return generate_outputs(model, tokenizer, [messages], max_new_tokens)[0]


def _pad_id(tokenizer: Any, stops: list[int]) -> int | None:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None and stops:
        pad = stops[0]
    return pad
