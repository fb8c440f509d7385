"""Preference data -> token ids + completion masks (DPO family, reward models, KTO, GRPO prompts).

A completion is scored in its chat context: the prompt becomes ``[system?] + user`` messages, the
completion the assistant answer, the whole rendered with the tokenizer's chat template
(:func:`lmforge.data.chat.encode_chat`). ``labels`` keep the completion's tokens plus the
template's end-of-turn token (``<|im_end|>`` for ChatML) and are -100 elsewhere (system, prompt,
template scaffolding), so log-probabilities are summed over exactly the answer.

Features:

- :func:`encode_pairs`: ``{"chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels", "uid"}``
- :func:`encode_unpaired`: ``{"input_ids", "labels", "desirable": bool, "uid"}`` (KTO)
- :func:`encode_prompts`: ``{"prompt_ids", "prompt", "reference", "uid"}`` (GRPO; prompt ends
  with the generation prompt, so sampling continues as the assistant)

``uid`` is a stable 63-bit id of the example's tokens (cache key for reference log-probs).
"""

from __future__ import annotations

import hashlib
import logging

from lmforge.config.schema import DataConfig
from lmforge.data.chat import encode_chat, render_chat
from lmforge.data.messages import prompt_messages, reference_text
from lmforge.errors import UserError

log = logging.getLogger(__name__)

IGNORE = -100
GOOD = {"good", "desirable", "chosen", "positive", "true", "yes", "1", "up", "thumbs_up", "accept"}
BAD = {"bad", "undesirable", "rejected", "negative", "false", "no", "0", "down", "thumbs_down", "reject"}


def conversation(prompt: str, completion: str | None, data_cfg: DataConfig | None) -> list[dict]:
    """``[system?] + user(prompt) + assistant(completion)`` (no assistant turn when ``completion`` is None)."""
    messages = []
    if data_cfg is not None and data_cfg.system_prompt:
        messages.append({"role": "system", "content": data_cfg.system_prompt})
    messages.append({"role": "user", "content": prompt})
    if completion is not None:
        messages.append({"role": "assistant", "content": completion})
    return messages


def encode_completion(prompt: str, completion: str, tokenizer, data_cfg: DataConfig) -> tuple[list[int], list[int], bool]:
    """(input_ids, labels, truncated) of ``completion`` answering ``prompt``, cut to ``data_cfg.max_length``.

    labels[i] == input_ids[i] on completion tokens (+ end-of-turn), -100 elsewhere.
    """
    enc = encode_chat(conversation(prompt, completion, data_cfg), tokenizer, "completion")
    ids, labels = enc.input_ids, enc.labels
    truncated = len(ids) > data_cfg.max_length
    if truncated:
        ids, labels = ids[: data_cfg.max_length], labels[: data_cfg.max_length]
    return list(ids), list(labels), truncated


def example_uid(*token_lists: list[int]) -> int:
    """A stable (process-independent) 63-bit id of the given token sequences."""
    digest = hashlib.blake2b(digest_size=8)
    for ids in token_lists:
        digest.update(len(ids).to_bytes(4, "little"))
        digest.update(b"".join(int(t).to_bytes(4, "little", signed=True) for t in ids))
    return int.from_bytes(digest.digest(), "little") >> 1


def encode_pairs(records: list[dict], tokenizer, data_cfg: DataConfig) -> list[dict]:
    """Preference records ``{"prompt", "chosen", "rejected"}`` -> paired features (see module doc).

    A pair where either side has no completion token left within ``max_length`` is dropped
    (logged); a UserError says so when none is left.
    """
    out, dropped = [], 0
    for record in records:
        chosen_ids, chosen_labels, _ = _encode(record, "chosen", tokenizer, data_cfg)
        rejected_ids, rejected_labels, _ = _encode(record, "rejected", tokenizer, data_cfg)
        if not _has_target(chosen_labels) or not _has_target(rejected_labels):
            dropped += 1
            continue
        out.append({
            "chosen_ids": chosen_ids, "chosen_labels": chosen_labels,
            "rejected_ids": rejected_ids, "rejected_labels": rejected_labels,
            "uid": example_uid(chosen_ids, rejected_ids),
        })
    _report(len(records), len(out), dropped, data_cfg)
    return out


def encode_unpaired(records: list[dict], tokenizer, data_cfg: DataConfig) -> list[dict]:
    """Unpaired good/bad features for KTO.

    preference records give two examples each (chosen = desirable, rejected = undesirable);
    classification records are ratings: ``text`` = prompt, ``text_pair`` = completion, ``label``
    good/bad (also desirable/undesirable, true/false, 1/0, ...).
    """
    out, dropped = [], 0
    for record in records:
        for prompt, completion, desirable in _unpaired(record):
            ids, labels, _ = encode_completion(prompt, completion, tokenizer, data_cfg)
            if not _has_target(labels):
                dropped += 1
                continue
            out.append({"input_ids": ids, "labels": labels, "desirable": desirable, "uid": example_uid(ids)})
    _report(len(records), len(out), dropped, data_cfg)
    return out


def encode_prompts(records: list[dict], tokenizer, data_cfg: DataConfig) -> list[dict]:
    """Prompts to sample from (GRPO): chat / instruction records -> rendered prompt + reference answer.

    ``prompt_ids`` ends with the template's generation prompt; prompts longer than
    ``max_length`` keep their last ``max_length`` tokens.
    """
    out = []
    for record in records:
        messages = prompt_messages(record, data_cfg)
        if data_cfg.system_prompt and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": data_cfg.system_prompt}] + messages
        text = render_chat(tokenizer, messages, add_generation_prompt=True)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])[-data_cfg.max_length :]
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), text)
        out.append({"prompt_ids": ids, "prompt": user, "reference": reference_text(record, data_cfg), "uid": example_uid(ids)})
    if not out:
        raise UserError("no prompt to sample completions for", where="data.train")
    return out


def _encode(record: dict, side: str, tokenizer, data_cfg: DataConfig):
    try:
        return encode_completion(record["prompt"], record[side], tokenizer, data_cfg)
    except UserError as exc:
        raise UserError(str(exc).split("\n  hint:")[0], where=record.get("_where"), hint=exc.hint) from None


def _unpaired(record: dict) -> list[tuple[str, str, bool]]:
    if "chosen" in record:
        return [(record["prompt"], record["chosen"], True), (record["prompt"], record["rejected"], False)]
    label = str(record.get("label", "")).strip().lower()
    if label not in GOOD | BAD or not record.get("text_pair"):
        raise UserError(
            f"a rating needs a completion (text_pair) and a good/bad label, got label '{label}'",
            where=record.get("_where"),
            hint="map your columns with data.columns: {text: prompt, text_pair: completion, label: label}",
        )
    return [(record["text"], record["text_pair"], label in GOOD)]


def _has_target(labels: list[int]) -> bool:
    return any(label != IGNORE for label in labels)


def _report(records: int, kept: int, dropped: int, data_cfg: DataConfig) -> None:
    if dropped:
        log.warning("dropped %d examples: no completion token within data.max_length=%d", dropped, data_cfg.max_length)
    if records and not kept:
        raise UserError(
            f"no example left after tokenizing {records} records",
            where="data.max_length",
            hint="raise data.max_length: every completion was cut away",
        )


def pad_token_id(tokenizer) -> int:
    """The id preference batches are padded with: the tokenizer's pad id, else eos, else 0 (pads are
    masked out anyway)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    return 0 if pad is None else int(pad)


def collate_pairs(features: list[dict], pad_id: int | None) -> dict:
    """Paired features -> one batch of 2B rows: rows ``[:B]`` chosen, ``[B:]`` rejected.

    Returns ``input_ids`` / ``attention_mask`` / ``labels`` (2B, T) right-padded (labels -100 on
    pads) and ``uid`` (B,).
    """
    import torch

    from lmforge.data.collate import collate_causal

    rows = [{"input_ids": f["chosen_ids"], "labels": f["chosen_labels"]} for f in features]
    rows += [{"input_ids": f["rejected_ids"], "labels": f["rejected_labels"]} for f in features]
    batch = collate_causal(rows, pad_id)
    batch["uid"] = torch.tensor([f["uid"] for f in features], dtype=torch.long)
    return batch


def collate_unpaired(features: list[dict], pad_id: int | None) -> dict:
    """Unpaired features -> ``input_ids`` / ``attention_mask`` / ``labels`` (B, T), ``desirable`` (B,) bool, ``uid`` (B,)."""
    import torch

    from lmforge.data.collate import collate_causal

    batch = collate_causal(features, pad_id)
    batch["desirable"] = torch.tensor([bool(f["desirable"]) for f in features], dtype=torch.bool)
    batch["uid"] = torch.tensor([f["uid"] for f in features], dtype=torch.long)
    return batch


def collate_prompts(features: list[dict], pad_id: int | None) -> dict:
    """Prompt features -> LEFT-padded ``input_ids`` / ``attention_mask`` (B, T) for generation, plus
    ``prompts`` and ``references`` (lists of str) and ``uid`` (B,)."""
    import torch

    width = max(len(f["prompt_ids"]) for f in features)
    pad = 0 if pad_id is None else pad_id
    ids = [[pad] * (width - len(f["prompt_ids"])) + list(f["prompt_ids"]) for f in features]
    mask = [[0] * (width - len(f["prompt_ids"])) + [1] * len(f["prompt_ids"]) for f in features]
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "prompts": [f["prompt"] for f in features],
        "references": [f["reference"] for f in features],
        "uid": torch.tensor([f["uid"] for f in features], dtype=torch.long),
    }
