"""LLM-as-judge: grade answers with any OpenAI-compatible chat endpoint (lmforge's own server included).

The judge is asked, per example, to rate a model answer against the reference on a 1..scale
scale and to end with ``Score: N``. The exact prompt template is returned with the scores so the
report can show what the judge was asked. Standard library HTTP only (``urllib``); the API key is
read from an environment variable, never from a config file.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Sequence

from lmforge.errors import UserError

DEFAULT_PROMPT = (
    "You are grading the answer of an assistant.\n"
    "Question:\n{question}\n\n"
    "Reference answer:\n{reference}\n\n"
    "Assistant's answer:\n{answer}\n\n"
    "Rate how well the assistant's answer matches the reference in meaning and correctness, "
    "from 1 (wrong or unrelated) to {scale} (fully correct). Reply with one line: Score: <number>"
)
_SCORE = re.compile(r"score\s*[:=]\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"\b(\d+(?:\.\d+)?)\b")


@dataclass(frozen=True)
class Judge:
    """Where and how to ask. ``base_url`` includes the API prefix, e.g. ``http://127.0.0.1:8000/v1``;
    the key is read from ``os.environ[api_key_env]`` when set (no Authorization header otherwise)."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    prompt: str = DEFAULT_PROMPT
    scale: int = 5
    max_tokens: int = 32
    timeout_s: float = 60.0
    concurrency: int = 8  # requests in flight at once: lmforge serve batches them into one decode


def render_prompt(judge: Judge, question: str, reference: str, answer: str) -> str:
    """The judge prompt for one example (``{question}``, ``{reference}``, ``{answer}``, ``{scale}`` filled)."""
    return judge.prompt.format(question=question, reference=reference, answer=answer, scale=judge.scale)


def parse_score(text: str, scale: int) -> float | None:
    """The grade in a judge reply: ``Score: N`` first, else the last bare number; None when there is
    none or it lies outside 1..scale."""
    match = _SCORE.search(text) or (list(_NUMBER.finditer(text)) or [None])[-1]
    if match is None:
        return None
    value = float(match.group(1))
    return value if 1 <= value <= scale else None


def ask(judge: Judge, prompt: str) -> str:
    """POST one chat completion (temperature 0) and return the reply text.

    Raises UserError when the endpoint cannot be reached, refuses the request (e.g. 401: wrong
    key) or answers something that is not an OpenAI chat completion.
    """
    body = {"model": judge.model, "messages": [{"role": "user", "content": prompt}],
            "temperature": 0, "max_tokens": judge.max_tokens}
    request = urllib.request.Request(judge.base_url.rstrip("/") + "/chat/completions",
                                     data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    key = os.environ.get(judge.api_key_env)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    where = f"judge {judge.base_url}"
    try:
        with urllib.request.urlopen(request, timeout=judge.timeout_s) as response:
            data = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise UserError(f"the judge endpoint answered HTTP {exc.code}: {detail}", where=where,
                        hint=f"check the model name and the API key in ${judge.api_key_env}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"cannot reach the judge endpoint ({exc})", where=where,
                        hint="start the server (e.g. `lmforge serve RUN`) or fix the URL (it ends with /v1)") from None
    except ValueError:
        raise UserError("the judge endpoint did not answer JSON", where=where) from None
    try:
        return str(data["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        raise UserError("the judge reply is not an OpenAI chat completion", where=where,
                        hint="use an OpenAI-compatible /v1/chat/completions endpoint") from None


def judge_outputs(judge: Judge, samples: Sequence[dict], systems: Sequence[str]) -> dict:
    """Grade each system's answer on each sample, ``judge.concurrency`` requests at a time.

    samples: ``[{"prompt": question, "reference": str, <system>: answer, ...}]`` (the report sample
    format: e.g. systems ``["before", "after"]`` or the compare system names).
    Returns ``{"model", "base_url", "prompt": the template, "scale", "systems": {system: mean score
    over graded answers, or None}, "mean": mean over all graded answers, "per_example": {system:
    [score or None]}, "replies": {system: [raw reply]}, "unparsed": count of replies without a
    grade}``.
    """
    from concurrent.futures import ThreadPoolExecutor

    asks = [(system, render_prompt(judge, str(sample.get("prompt", "")), str(sample.get("reference", "")),
                                   str(sample[system])))
            for system in systems for sample in samples if system in sample]
    with ThreadPoolExecutor(max_workers=max(1, judge.concurrency)) as pool:  # answers come back in order
        answers = list(pool.map(lambda item: ask(judge, item[1]), asks))
    per_example: dict[str, list] = {system: [] for system in systems}
    replies: dict[str, list[str]] = {system: [] for system in systems}
    for (system, _prompt), reply in zip(asks, answers):
        replies[system].append(reply)
        per_example[system].append(parse_score(reply, judge.scale))
    graded = [s for scores in per_example.values() for s in scores if s is not None]
    return {
        "model": judge.model,
        "base_url": judge.base_url,
        "prompt": judge.prompt,
        "scale": judge.scale,
        "systems": {name: _mean(scores) for name, scores in per_example.items()},
        "mean": _mean(graded),
        "per_example": per_example,
        "replies": replies,
        "unparsed": sum(s is None for scores in per_example.values() for s in scores),
    }


def _mean(scores: Sequence[Any]) -> float | None:
    values = [s for s in scores if s is not None]
    return sum(values) / len(values) if values else None
