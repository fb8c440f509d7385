"""Render a conversation with the tokenizer's chat template and find which tokens are trained.

With ``train_on: completion`` the trained tokens are each assistant message's content plus the
template's end-of-turn token right after it (``<|im_end|>`` for ChatML), so the model learns to
stop. Most real templates lack ``{% generation %}`` markers, so the assistant spans are found
by rendering the conversation prefix by prefix: the text rendered for ``messages[:i]`` with the
generation prompt is where assistant turn ``i`` starts; its content is searched from there (this
skips any default system prompt a template injects, as SmolLM2's does). Character spans become
token labels through the tokenizer's offset mapping (fast tokenizers) or prefix token counts.

Tokenizers without a chat template use :data:`BUILTIN_TEMPLATE`: one ``role: content<eos>``
line per message and ``assistant: `` as the generation prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.errors import UserError

IGNORE = -100

BUILTIN_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] + ': ' + message['content'] + (eos_token or '') + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


@dataclass(frozen=True)
class ChatEncoding:
    """A rendered conversation: its text, trained character spans, token ids, labels, offsets.

    ``labels[i]`` is ``input_ids[i]`` for a trained token, else -100. ``offsets`` are per-token
    ``(start, end)`` character offsets into ``text``, or None for tokenizers without them.
    """

    text: str
    spans: list[tuple[int, int]]
    input_ids: list[int]
    labels: list[int]
    offsets: list[tuple[int, int]] | None


def render_chat(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
    """The conversation as text, through the tokenizer's template (or the built-in one)."""
    template = None if getattr(tokenizer, "chat_template", None) else BUILTIN_TEMPLATE  # None: its own
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def encode_chat(messages: list[dict], tokenizer, train_on: str = "completion") -> ChatEncoding:
    """Render and tokenize ``messages``; label the assistant spans (``completion``) or all tokens (``all``)."""
    try:
        text = render_chat(tokenizer, messages)
    except Exception as exc:  # jinja2 TemplateError, or a template's raise_exception(...)
        raise UserError(
            f"the tokenizer's chat template rejected this conversation: {exc}",
            hint="some templates allow no system message or need strictly alternating user/assistant turns",
        ) from None
    spans = [(0, len(text))] if train_on == "all" else assistant_spans(tokenizer, messages, text)
    ids, offsets = _tokenize(tokenizer, text)
    if offsets is not None:
        trained = [_overlaps(start, end, spans) for start, end in offsets]
    else:
        trained = _trained_by_prefix(tokenizer, text, spans, len(ids))
    labels = [tok if keep else IGNORE for tok, keep in zip(ids, trained)]
    return ChatEncoding(text, spans, ids, labels, offsets)


def assistant_spans(tokenizer, messages: list[dict], text: str) -> list[tuple[int, int]]:
    """Character spans of ``text`` covering each assistant message's content + its end-of-turn token."""
    specials = _special_strings(tokenizer)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _turn_start(tokenizer, messages[:i], text, cursor)
        content_start, content_end = _find_content(text, message["content"], start)
        spans.append((content_start, _end_of_turn(text, content_end, specials)))
        cursor = spans[-1][1]
    return spans


def _turn_start(tokenizer, before: list[dict], text: str, cursor: int) -> int:
    """Where assistant content may start: after the rendered prefix + generation prompt."""
    if before:
        for generation_prompt in (True, False):
            try:
                prefix = render_chat(tokenizer, before, add_generation_prompt=generation_prompt)
            except Exception:  # a template may refuse a partial conversation
                continue
            if text.startswith(prefix) and len(prefix) >= cursor:
                return len(prefix)
    return cursor


def _find_content(text: str, content: str, start: int) -> tuple[int, int]:
    if not content.strip():
        return start, start
    for candidate in (content, content.strip()):
        index = text.find(candidate, start)
        if index >= 0:
            return index, index + len(candidate)
    raise UserError(
        "the chat template changes the assistant's text, so the trained tokens cannot be located",
        hint="set data.train_on: all, or use a model whose chat template keeps messages verbatim",
    )


def _end_of_turn(text: str, content_end: int, specials: list[str]) -> int:
    """End of the span: through the first special token after the content (only whitespace between)."""
    rest = text[content_end:]
    gap = len(rest) - len(rest.lstrip())
    for token in specials:
        if rest.startswith(token, gap):
            return content_end + gap + len(token)
    return content_end


def _special_strings(tokenizer) -> list[str]:
    """Special token strings, longest first (so '<|im_end|>' wins over a shorter prefix)."""
    names = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values():
        if getattr(added, "special", False):
            names.add(str(added))
    return sorted((n for n in names if n), key=len, reverse=True)


def _tokenize(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]), None


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    if end == start:
        return any(a <= start < b for a, b in spans)
    return any(start < b and end > a for a, b in spans)


def _trained_by_prefix(tokenizer, text: str, spans: list[tuple[int, int]], n: int) -> list[bool]:
    """Slow tokenizers: a span covers tokens [len(tok(text[:a])), len(tok(text[:b])))."""
    trained = [False] * n
    for a, b in spans:
        first = len(tokenizer(text[:a], add_special_tokens=False)["input_ids"])
        last = len(tokenizer(text[:b], add_special_tokens=False)["input_ids"])
        for i in range(first, min(last, n)):
            trained[i] = True
    return trained


def token_end(encoding: ChatEncoding, n_tokens: int) -> int:
    """Character offset where the first ``n_tokens`` tokens end (for showing truncated text)."""
    if n_tokens >= len(encoding.input_ids) or encoding.offsets is None:
        return len(encoding.text)
    return encoding.offsets[n_tokens - 1][1] if n_tokens > 0 else 0
