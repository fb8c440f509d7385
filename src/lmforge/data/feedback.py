"""Human feedback: judgements on sampled answers, stored as training data with provenance.

A labelling session shows k answers per prompt and records one :class:`Judgement`:

- pair mode: ``choice`` = "A" / "B" / ... (that answer is best), "tie", or "both_bad"; optional
  ``edit`` (a corrected answer written by the person);
- rate mode: one judgement per answer, ``choice`` = "good" or "bad".

:class:`FeedbackStore` keeps three JSONL files in one folder, each line carrying ``provenance``:

- ``judgements.jsonl``: every judgement as given (the raw log; ties and skips included);
- ``preferences.jsonl``: ``{"prompt", "chosen", "rejected"}`` pairs derived from it (best answer over
  each other one; an edit over every shown answer) -> ``data.format: preference`` (dpo, reward, ...);
- ``ratings.jsonl``: ``{"prompt", "completion", "label": good|bad}`` (rate mode, "both_bad", edits)
  -> KTO with ``data.format: classification``, ``columns: {text: prompt, text_pair: completion}``.

Appends are durable: each record is one ``os.write`` of a whole line to a file opened with
``O_APPEND``, then fsync'd, before the session moves on; an interrupted session (Ctrl-C, a
crash, a kill) keeps every judgement already answered, and a restarted session skips the
prompts already judged. A line cut short by a power loss is ignored when reading.

Several writers at once (annotators in ``lmforge ui``, a terminal session beside them) are
serialised by an exclusive lock on ``<folder>/.lock``; a judgement whose ``id`` is already stored
is not stored again (a resubmitted form), so none is lost or duplicated. :func:`agreement`
measures how often annotators who judged the same answers agree.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from lmforge.errors import UserError

log = logging.getLogger(__name__)

PAIR_CHOICES = ("tie", "both_bad")
RATINGS = ("good", "bad")


@dataclass(frozen=True)
class Judgement:
    """One person's verdict on the answers shown for one prompt (see module doc)."""

    prompt: str
    completions: list[str]
    choice: str
    edit: str | None = None
    mode: str = "pair"  # "pair" or "rate" (rate: completions holds the one rated answer)
    provenance: dict = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        letters = [letter(i) for i in range(len(self.completions))]
        allowed = RATINGS if self.mode == "rate" else tuple(letters) + PAIR_CHOICES
        if self.choice not in allowed:
            raise ValueError(f"choice '{self.choice}' is not one of {', '.join(allowed)}")

    def preference_pairs(self) -> list[tuple[str, str]]:
        """(chosen, rejected) pairs this judgement implies (none for ties, both-bad and ratings)."""
        if self.mode == "rate":
            return []
        pairs = []
        if self.choice not in PAIR_CHOICES:
            best = self.completions[ord(self.choice) - ord("A")]
            pairs += [(best, other) for other in self.completions if other != best]
        if self.edit:
            pairs += [(self.edit, other) for other in self.completions if other != self.edit]
        return list(dict.fromkeys(pairs))

    def ratings(self) -> list[tuple[str, str]]:
        """(completion, good|bad) single-answer ratings this judgement implies."""
        if self.mode == "rate":
            return [(self.completions[0], self.choice)]
        out = [(c, "bad") for c in self.completions] if self.choice == "both_bad" else []
        if self.edit:
            out.append((self.edit, "good"))
        return out


def letter(index: int) -> str:
    return chr(ord("A") + index)


class FeedbackStore:
    """Append-only judgement store in ``folder`` (see module doc for the files)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.judgements = self.folder / "judgements.jsonl"
        self.preferences = self.folder / "preferences.jsonl"
        self.ratings = self.folder / "ratings.jsonl"

    def append(self, judgement: Judgement, once_per: tuple[str, ...] = ()) -> bool:
        """Durably record ``judgement`` and the pairs / ratings it implies. Safe under concurrent writers.

        False (nothing written) when a judgement with the same ``id`` is already stored, or, with
        ``once_per`` (provenance fields, e.g. ``("annotator", "item")``), one with the same values of
        all those fields (a person judging the same item twice, from two browser tabs say).
        """
        prov = {**judgement.provenance, "judgement": judgement.id}
        key = tuple(judgement.provenance.get(f) for f in once_per)
        with self._locked():
            for row in read_jsonl(self.judgements):
                if row.get("id") == judgement.id or (
                        once_per and tuple((row.get("provenance") or {}).get(f) for f in once_per) == key):
                    return False
            _append_line(self.judgements, asdict(judgement))
            for chosen, rejected in judgement.preference_pairs():
                _append_line(self.preferences, {"prompt": judgement.prompt, "chosen": chosen, "rejected": rejected,
                                                "provenance": prov})
            for completion, label in judgement.ratings():
                _append_line(self.ratings, {"prompt": judgement.prompt, "completion": completion, "label": label,
                                            "provenance": prov})
        return True

    def read(self) -> list[Judgement]:
        """Every stored judgement, in order (a trailing half-written line is skipped)."""
        return [Judgement(**row) for row in read_jsonl(self.judgements)]

    def judged_prompts(self, annotator: str | None = None) -> set[str]:
        """Prompts that already have a judgement (by ``annotator`` when given; a resumed session skips them)."""
        return {row["prompt"] for row in read_jsonl(self.judgements)
                if annotator is None or (row.get("provenance") or {}).get("annotator") == annotator}

    @contextlib.contextmanager
    def _locked(self):
        """An exclusive lock on ``<folder>/.lock`` (between threads and processes) for one append."""
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _append_line(path: Path, row: dict) -> None:
    data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write (rare; e.g. a full disk) continues where it stopped
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a feedback JSONL file; an incomplete LAST line (a write cut by a crash) is dropped."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the write never finished
                log.warning("%s: ignoring a half-written last line", path)
                continue
            raise UserError("malformed feedback line", where=f"{path}:{number}") from None
    return rows


def provenance(**fields) -> dict:
    """Provenance for a judgement: the given fields (model, sampling, annotator, source ...) + UTC time."""
    return {**fields, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


Sampler = Callable[[str, int], list[str]]  # (prompt, k) -> k answers
Ask = Callable[[str], str]  # shows a question, returns the person's typed answer


def collect(prompts: list[str], sample: Sampler, ask: Ask, store: FeedbackStore, *, mode: str = "pair", k: int = 2,
            meta: dict | None = None, say: Callable[[str], None] = print) -> int:
    """Run a labelling session; returns the number of judgements stored in this session.

    For each prompt not judged before: ``sample(prompt, k)`` answers are shown, the person answers
    through ``ask``; every judgement is stored (durably) before the next prompt. "q" ends the
    session; "s" skips a prompt. Ctrl-C ends it too, keeping every answered judgement.
    """
    done = store.judged_prompts()
    todo = [p for p in prompts if p not in done]
    if len(todo) < len(prompts):
        say(f"resuming: {len(prompts) - len(todo)} prompts already judged in {store.folder}")
    stored = 0
    for number, prompt in enumerate(todo, start=1):
        answers = sample(prompt, k)
        say(f"\n[{number}/{len(todo)}] prompt:\n{prompt}")
        for i, answer in enumerate(answers):
            say(f"\n--- {letter(i)} ---\n{answer}")
        prov = provenance(**(meta or {}), prompt_number=number)
        ask_one = _ask_pair if mode == "pair" else _ask_ratings
        judgements, quit_now = ask_one(prompt, answers, ask, prov)
        for judgement in judgements:
            stored += store.append(judgement)
        if quit_now:
            break
    say(f"\nstored {stored} judgements in {store.folder}")
    return stored


def _ask_pair(prompt: str, answers: list[str], ask: Ask, prov: dict) -> tuple[list[Judgement], bool]:
    """(judgements, quit) for one prompt in pair mode."""
    letters = [letter(i) for i in range(len(answers))]
    keys = {x.lower(): x for x in letters} | {"t": "tie", "x": "both_bad"}
    question = f"better answer? [{'/'.join(x.lower() for x in letters)}] t=tie x=both bad e=edit s=skip q=quit: "
    while True:
        reply = ask(question).strip().lower()
        if reply == "q":
            return [], True
        if reply == "s":
            return [], False
        if reply == "e":
            edit = ask("write the answer it should give (one line): ").strip()
            base = ask(f"which answer was closest? [{'/'.join(x.lower() for x in letters)}] x=none: ").strip().lower()
            choice = keys.get(base, "both_bad") if base != "t" else "tie"
            return [Judgement(prompt, answers, choice, edit=edit or None, provenance=prov)], False
        if reply in keys:
            return [Judgement(prompt, answers, keys[reply], provenance=prov)], False


def _ask_ratings(prompt: str, answers: list[str], ask: Ask, prov: dict) -> tuple[list[Judgement], bool]:
    """(judgements, quit) for one prompt in rate mode: one good/bad rating per answer."""
    out = []
    for i, answer in enumerate(answers):
        while True:
            reply = ask(f"answer {letter(i)}: g=good b=bad s=skip q=quit: ").strip().lower()
            if reply == "q":
                return out, True  # keep what was rated for this prompt
            if reply in ("g", "b"):
                out.append(Judgement(prompt, [answer], "good" if reply == "g" else "bad", mode="rate", provenance=prov))
                break
            if reply == "s":
                break
    return out, False


def verdict(judgement: Judgement) -> tuple[tuple, str]:
    """(item key, verdict) of a judgement, independent of the order the answers were shown in.

    Pair mode: the item is (prompt, the answers in sorted order); the verdict is the chosen
    answer's position in that order ("0", "1", ...), "tie" or "both_bad". Rate mode: the item is
    (prompt, answer) and the verdict "good" / "bad".
    """
    if judgement.mode == "rate":
        return ("rate", judgement.prompt, judgement.completions[0]), judgement.choice
    ordered = sorted(judgement.completions)
    key = ("pair", judgement.prompt, tuple(ordered))
    if judgement.choice in PAIR_CHOICES:
        return key, judgement.choice
    return key, str(ordered.index(judgement.completions[ord(judgement.choice) - ord("A")]))


def agreement(judgements: list[Judgement]) -> dict:
    """Agreement between annotators (``provenance["annotator"]``) who judged the same items.

    Returns ``{"annotators": [names], "shared_items": items judged by 2+ annotators,
    "pairs": [{"a", "b", "items", "agree" (fraction), "kappa" (Cohen's, None when undefined)}],
    "agree": fraction over all annotator pairs and shared items (None without any)}``.
    An annotator's latest verdict on an item counts; unnamed judgements are left out.
    """
    by_item: dict[tuple, dict[str, str]] = defaultdict(dict)
    for j in judgements:
        name = (j.provenance or {}).get("annotator")
        if name:
            key, value = verdict(j)
            by_item[key][str(name)] = value
    names = sorted({n for votes in by_item.values() for n in votes})
    pairs, agreed, total = [], 0, 0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = [(v[a], v[b]) for v in by_item.values() if a in v and b in v]
            if not both:
                continue
            same = sum(x == y for x, y in both)
            pairs.append({"a": a, "b": b, "items": len(both), "agree": same / len(both), "kappa": cohen_kappa(both)})
            agreed, total = agreed + same, total + len(both)
    shared = sum(len(v) >= 2 for v in by_item.values())
    return {"annotators": names, "shared_items": shared, "pairs": pairs, "agree": agreed / total if total else None}


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same items; None when chance agreement is 1."""
    n = len(pairs)
    observed = sum(x == y for x, y in pairs) / n
    labels = {x for x, _ in pairs} | {y for _, y in pairs}
    expected = sum((sum(x == c for x, _ in pairs) / n) * (sum(y == c for _, y in pairs) / n) for c in labels)
    return None if expected >= 1 else (observed - expected) / (1 - expected)
