"""Page 4, feedback in the browser: annotators judge a run's answers (A/B, tie, both bad, an
edited better answer; or good/bad per answer) into the run's feedback folder, through
:class:`lmforge.data.feedback.FeedbackStore` -- the same files ``lmforge feedback`` writes, so
they train ``dpo`` / ``reward`` (preferences.jsonl) and ``kto`` (ratings.jsonl) unchanged.

Items come from the run's report samples: each held-out prompt with its answer before and after
training. Each annotator sees the answers of an item in an order of their own (seeded by item
and name, so position does not favour a system); agreement is measured on the answers, not on
letters. Every form carries a submission id: a form sent twice stores one judgement, and an
annotator's second judgement of the same item (another tab) is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, RedirectResponse

from lmforge.data.feedback import FeedbackStore, Judgement, agreement, letter, provenance
from lmforge.ui.app import UIContext
from lmforge.ui.forms import field, read_form
from lmforge.ui.paths import inside, run_folder

ANNOTATOR = re.compile(r"[\w .@+-]{1,64}")
SUBMISSION = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Item:
    """Something to judge: a prompt and the answers to compare (pair) or the one to rate (rate)."""

    id: str
    prompt: str
    answers: tuple[str, ...]
    systems: tuple[str, ...]  # which run / model gave each answer ("before", "after")
    reference: str = ""


def items_of(results: dict, mode: str) -> list[Item]:
    """The items of a run's report samples (those with both a before and an after answer)."""
    out = []
    for s in results.get("samples") or []:
        if not s.get("prompt") or "after" not in s:
            continue
        pairs = [("before", str(s["before"])), ("after", str(s["after"]))] if "before" in s else [("after", str(s["after"]))]
        if mode == "pair" and len(pairs) == 2:
            out.append(_item(s, tuple(a for _, a in pairs), tuple(n for n, _ in pairs)))
        elif mode == "rate":
            out += [_item(s, (answer,), (name,)) for name, answer in pairs]
    return out


def _item(sample: dict, answers: tuple, systems: tuple) -> Item:
    digest = hashlib.sha256(repr((sample["prompt"], sorted(answers))).encode()).hexdigest()[:16]
    return Item(digest, str(sample["prompt"]), answers, systems, str(sample.get("reference", "")))


def shown_order(item: Item, annotator: str) -> list[int]:
    """The order ``annotator`` sees the item's answers in (stable across requests)."""
    order = list(range(len(item.answers)))
    random.Random(f"{item.id}:{annotator}").shuffle(order)
    return order


def check_annotator(name: str) -> str:
    name = name.strip()
    if not ANNOTATOR.fullmatch(name):
        raise HTTPException(400, "annotator: 1-64 letters, digits, spaces or . @ + - _")
    return name


def build_judgement(item: Item, form: dict, mode: str, annotator: str, run: str) -> Judgement:
    """The judgement a submitted form describes; HTTP 400 for a choice the item does not offer."""
    submission = field(form, "submission")
    if not SUBMISSION.fullmatch(submission):
        raise HTTPException(400, "bad submission id")
    order = shown_order(item, annotator)
    completions = [item.answers[i] for i in order]
    choice = field(form, "choice", "")
    edit = field(form, "edit", "").replace("\r\n", "\n").strip() or None
    prov = provenance(source="lmforge ui", run=run, annotator=annotator, item=item.id, mode=mode,
                      systems={letter(i): item.systems[j] for i, j in enumerate(order)})
    try:
        return Judgement(item.prompt, completions, choice, edit=edit if mode == "pair" else None, mode=mode,
                         provenance=prov, id=submission)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def register(app: FastAPI, ctx: UIContext) -> None:
    limit = ctx.settings.max_body_bytes

    def store_for(name: str) -> FeedbackStore:
        ctx.feedback_dir.mkdir(parents=True, exist_ok=True)
        return FeedbackStore(inside(ctx.feedback_dir, name))

    def values(name: str, annotator: str, mode: str, message: str = "") -> dict:
        folder = run_folder(ctx.runs_dir, name)
        items = items_of(ctx.index.results(folder), mode)
        target = inside(ctx.feedback_dir, name)  # a page view creates nothing: only a judgement does
        judged = FeedbackStore(target).read() if target.is_dir() else []
        mine = {j.provenance.get("item") for j in judged if j.provenance.get("annotator") == annotator
                and j.mode == mode} if annotator else set()
        todo = [i for i in items if i.id not in mine]
        item = todo[0] if todo and annotator else None
        shown = [(letter(k), item.answers[i]) for k, i in enumerate(shown_order(item, annotator))] if item else []
        counts: dict[str, int] = {}
        for j in judged:
            who = j.provenance.get("annotator") or "(unnamed)"
            counts[who] = counts.get(who, 0) + 1
        return {"title": f"Feedback: {name}", "name": name, "annotator": annotator, "mode": mode, "item": item,
                "shown": shown, "submission": uuid.uuid4().hex, "done": len(items) - len(todo),
                "total": len(items), "counts": counts, "agreement": agreement(judged), "message": message,
                "folder": str(target), "where": str(target)}

    def mode_of(value: str) -> str:
        if value not in ("pair", "rate"):
            raise HTTPException(400, "mode is pair or rate")
        return value

    @app.get("/feedback/{name}", response_class=HTMLResponse)
    async def feedback_page(name: str, request: Request):
        q = request.query_params
        annotator = check_annotator(q["annotator"]) if q.get("annotator") else ""
        data = await asyncio.to_thread(values, name, annotator, mode_of(q.get("mode", "pair")))
        return ctx.page("feedback.html", **data)

    @app.post("/feedback/{name}")
    async def feedback_submit(name: str, request: Request):
        form = await read_form(request, limit)
        annotator, mode = check_annotator(field(form, "annotator")), mode_of(field(form, "mode", "pair"))
        folder = run_folder(ctx.runs_dir, name)
        item_id = field(form, "item")
        item = next((i for i in items_of(ctx.index.results(folder), mode) if i.id == item_id), None)
        if item is None:
            raise HTTPException(404, f"no item {item_id[:40]!r} in run {name!r}")
        judgement = build_judgement(item, form, mode, annotator, name)
        stored = await asyncio.to_thread(store_for(name).append, judgement, ("annotator", "item", "mode"))
        message = "saved" if stored else f"not saved: {annotator} has judged this item already"
        if request.headers.get("hx-request") == "true":
            data = await asyncio.to_thread(values, name, annotator, mode, message)
            return HTMLResponse(ctx.fragment("feedback_panel.html", **data))
        return RedirectResponse(f"/feedback/{name}?" + urlencode({"annotator": annotator, "mode": mode}), status_code=303)
