"""Chat and text completions: prompt rendering, limits, non-streaming and SSE streaming answers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator

from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from lmforge.serve.apierror import APIError
from lmforge.data.records import ROLES
from lmforge.serve.engine import GenJob
from lmforge.serve.logprobs import chat_logprobs, completion_logprobs
from lmforge.serve.protocol import MAX_PROMPTS, ChatRequest, CompletionRequest, Sampling


def chat_prompt_ids(tokenizer, req: ChatRequest) -> list[int]:
    """Messages -> token ids through the tokenizer's chat template (generation prompt appended)."""
    if not tokenizer.chat_template:
        raise APIError(400, "this model has no chat template; use /v1/completions", "no_chat_template")
    # The roles training data is read with (lmforge.data.records.ROLES: OpenAI's "developer" is the system
    # message), so the model sees at serving time the role it was trained with; tool roles pass as they are.
    msgs = [{"role": ROLES.get(m.role, m.role), "content": m.text()} for m in req.messages]
    try:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # template errors (e.g. role order) are the client's
        raise APIError(400, f"chat template rejected the messages: {exc}", "invalid_messages") from None
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class Prompt:
    """One /v1/completions prompt: its token ids, its text (what ``echo`` returns) and each token's character offset
    in that text (``text_offset`` of echoed log-probabilities)."""

    ids: list[int]
    text: str
    offsets: list[int]


def completion_prompts(state, req: CompletionRequest) -> list[Prompt]:
    """The request's prompts: a text is tokenized as the model's tokenizer does by default (offsets from the fast
    tokenizer's offset mapping); token ids are checked against the vocabulary (400 naming ``prompt`` or
    ``prompt.I``) and decoded for their text (offsets from each token's bytes: exact for byte-level BPE)."""
    tokenizer, vocab, prompts = state.store.tokenizer, state.vocab_size, req.prompts()
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if getattr(tokenizer, "is_fast", False):
                enc = tokenizer(prompt, return_offsets_mapping=True)
                out.append(Prompt(enc["input_ids"], prompt, [start for start, _ in enc["offset_mapping"]]))
            else:
                ids = tokenizer(prompt)["input_ids"]
                out.append(Prompt(ids, prompt, _byte_offsets(state.pieces, ids)))
            continue
        bad = next((t for t in prompt if vocab is not None and t >= vocab), None)
        if bad is not None:
            field = f"prompt.{i}" if len(prompts) > 1 else "prompt"
            raise APIError(400, f"{field}: token id {bad} is not in the model's vocabulary (0..{vocab - 1})",
                           "invalid_request", field)
        out.append(Prompt(list(prompt), tokenizer.decode(prompt, skip_special_tokens=False),
                          _byte_offsets(state.pieces, prompt)))
    return out


def _byte_offsets(pieces, ids: list[int]) -> list[int]:
    """Each token's character offset in the text its bytes make (exact for byte-level BPE vocabularies)."""
    raw, offsets = b"", []
    for token in ids:
        offsets.append(len(raw.decode("utf-8", "ignore")))
        raw += bytes(pieces.piece(token)[1])
    return offsets


def plan_tokens(state, req: Sampling, prompt_ids: list[int], field: str) -> int:
    """Check prompt/max_tokens limits (400 naming ``field`` for the prompt) and return the number
    of tokens to generate."""
    lim = state.cfg.limits
    if not prompt_ids:
        raise APIError(400, f"{field}: the prompt has no tokens; send some text", "empty_prompt", field)
    if len(prompt_ids) > lim.max_prompt_tokens:
        raise APIError(400, f"prompt is {len(prompt_ids)} tokens; the limit is {lim.max_prompt_tokens}",
                       "context_length_exceeded", field)
    wanted = req.wanted_tokens(min(256, lim.max_tokens))
    if wanted > lim.max_tokens:
        raise APIError(400, f"max_tokens {wanted} is above the limit {lim.max_tokens}",
                       "max_tokens_too_large", "max_tokens")
    room = state.max_positions - len(prompt_ids) if state.max_positions else wanted
    if room < 1:
        raise APIError(400, "prompt fills the model's context window", "context_length_exceeded", field)
    return min(wanted, room)


def start_job(state, req: Sampling, prompt_ids: list[int], max_tokens: int, copy: int = 0,
              events: asyncio.Queue | None = None, scored: bool = False) -> tuple[GenJob, asyncio.Queue]:
    """Submit a job to the engine; ``(copy, kind, payload)`` events arrive on the returned queue (``events``
    when given: the n answers of one streamed prompt share it); ``scored``: with logprobs, the prompt's tokens
    are scored too (echo). ``copy``: which of the request's ``n``
    answers to this prompt; with a ``seed``, copy j samples with seed + j (reproducible, and not n copies of
    one answer)."""
    loop, events = asyncio.get_running_loop(), events or asyncio.Queue()

    def emit(kind, payload):
        loop.call_soon_threadsafe(events.put_nowait, (copy, kind, payload))

    seed = req.seed if req.seed is None or copy == 0 else (req.seed + copy if req.seed + copy < 2**64 else req.seed - copy)
    job = GenJob(model=req.model, prompt_ids=prompt_ids, max_tokens=max_tokens, temperature=req.temperature,
                 top_p=req.top_p, stops=req.stop_list(), emit=emit, seed=seed, logprobs=req.top_logprobs_wanted(),
                 prompt_logprobs=scored and req.top_logprobs_wanted() is not None,
                 adjust=dict(presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
                             repetition_penalty=req.repetition_penalty, logit_bias=req.bias()))
    state.engine.submit(job)
    return job, events


async def collect(job: GenJob, events: asyncio.Queue, deadline: float) -> dict:
    """Wait for the job's "done" payload; 504 past ``deadline`` (monotonic), 503 if it failed."""
    while True:
        try:
            _copy, kind, payload = await asyncio.wait_for(events.get(), max(0.001, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            job.cancelled = True
            raise APIError(504, "request timed out", "timeout") from None
        if kind == "done":
            return payload
        if kind == "error":
            raise APIError(503, payload, "generation_failed")


def usage(done: list[dict], n: int = 1) -> dict:
    """OpenAI's usage of answers ``done`` (prompt by prompt, ``n`` each): each prompt counted once, every answer."""
    p = sum(d["prompt_tokens"] for d in done[::n])
    c = sum(d["completion_tokens"] for d in done)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def account(state, done: list[dict], seconds: float, n: int = 1) -> None:
    u = usage(done, n)
    state.metrics.prompt_tokens.inc(u["prompt_tokens"])
    state.metrics.generated.inc(u["completion_tokens"])
    if seconds > 0 and u["completion_tokens"]:
        state.metrics.tokens_per_s.observe(u["completion_tokens"] / seconds)


async def answer(state, req: Sampling, prompts: list[list[int]], chat: bool, echo: list[Prompt] | None = None):
    """Run ``req.n`` jobs per prompt and build the OpenAI response (JSON, or SSE when req.stream); choices are
    numbered prompt by prompt, the n answers of each in turn (as OpenAI numbers them). ``echo``: the prompts of
    a completions request with ``echo: true``, returned before each answer (their tokens scored with logprobs).

    The request first waits for its turn (state.admission); request_timeout_s counts from arrival."""
    field = "messages" if chat else "prompt"
    if echo is not None and req.stream:
        raise APIError(400, "echo is not supported with stream: true (leave one of them out)", "invalid_request", "echo")
    vocab = state.vocab_size
    for key in req.logit_bias or {}:  # the request's, once (plan_tokens runs per prompt)
        if vocab is not None and int(key) >= vocab:
            raise APIError(400, f"logit_bias.{key}: token id {int(key)} is not in the model's vocabulary "
                           f"(0..{vocab - 1})", "invalid_request", f"logit_bias.{key}")
    if len(prompts) * req.n > MAX_PROMPTS:
        raise APIError(400, f"{len(prompts)} prompts x n={req.n} answers is over {MAX_PROMPTS} generations per "
                       "request", "invalid_request", "n")
    limits = [plan_tokens(state, req, ids, field) for ids in prompts]
    deadline = time.monotonic() + state.cfg.limits.request_timeout_s
    if req.stream:
        if len(prompts) != 1:
            raise APIError(400, "streaming supports a single prompt", "invalid_request", "prompt")
        return await stream(state, req, prompts[0], limits[0], chat, deadline)
    async with state.admission.turn(deadline):
        start = time.monotonic()
        jobs = [start_job(state, req, ids, n, copy, scored=echo is not None)
                for ids, n in zip(prompts, limits) for copy in range(req.n)]
        try:
            done = [await collect(job, ev, deadline) for job, ev in jobs]
        except BaseException:
            for job, _ in jobs:  # a timeout, failure or cancellation ends the whole request
                job.cancelled = True
            raise
    account(state, done, time.monotonic() - start, req.n)
    rid, created = uuid.uuid4().hex[:24], int(time.time())
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": d["text"]},
                    "finish_reason": d["finish_reason"], "logprobs": choice_logprobs(state, d, chat)}
                   for i, d in enumerate(done)]
        body = {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": created, "model": req.model,
                "choices": choices, "usage": usage(done, req.n)}
    else:
        shown = [echo[i // req.n] if echo is not None else None for i in range(len(done))]
        choices = [{"index": i, "text": (p.text if p else "") + d["text"], "finish_reason": d["finish_reason"],
                    "logprobs": choice_logprobs(state, d, chat, echo=p)} for i, (d, p) in enumerate(zip(done, shown))]
        body = {"id": f"cmpl-{rid}", "object": "text_completion", "created": created, "model": req.model,
                "choices": choices, "usage": usage(done, req.n)}
    state.log.write(event="completion", model=req.model, prompt_tokens=body["usage"]["prompt_tokens"],
                    completion_tokens=body["usage"]["completion_tokens"],
                    output=state.log.text(" | ".join(d["text"] for d in done)))
    return JSONResponse(body)


def choice_logprobs(state, done: dict, chat: bool, entries: list | None = None, echo: Prompt | None = None) -> dict | None:
    """A choice's ``logprobs`` field: None unless the request asked; else the answer's tokens (``entries``:
    [(TokenLogprob, offset)] of one streamed chunk instead of the whole answer) in the endpoint's shape, after
    the prompt's own tokens when it is echoed (the first has no log-probability: nothing came before it)."""
    if entries is None:
        if "logprobs" not in done:
            return None
        entries = list(zip(done["logprobs"], done["offsets"]))
    if chat:
        return chat_logprobs([e for e, _ in entries], state.pieces)
    end = len(done.get("text", ""))  # a token past a stop string starts where the returned text ends
    entries = entries + stop_entry(done)
    if echo is None:
        return completion_logprobs([e for e, _ in entries], [min(o, end) for _, o in entries], state.pieces)
    shift = len(echo.text)
    return completion_logprobs(list(done["prompt_logprobs"]) + [e for e, _ in entries],
                               echo.offsets + [shift + min(o, end) for _, o in entries], state.pieces,
                               first=echo.ids[0])


def stop_entry(done: dict) -> list:
    """[(TokenLogprob, offset)] of the end-of-turn / eos token that ended a completion, when it did: the legacy
    API lists it last (harnesses asking for one token with ``echo`` expect one entry after the prompt's)."""
    stop = done.get("stop_logprob")
    return [] if stop is None else [(stop, len(done.get("text", "")))]


class OwnedStream(StreamingResponse):
    """A streaming response that runs ``on_close`` when it ends however it ends: finished, failed,
    or the client went away, even before the first chunk (then the body generator never starts and
    its own ``finally`` never runs)."""

    def __init__(self, content, on_close, **kwargs):
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


async def stream(state, req: Sampling, prompt_ids: list[int], max_tokens: int, chat: bool,
                 deadline: float) -> StreamingResponse:
    """SSE in the OpenAI chunk format, ending with ``data: [DONE]``; the turn is held until the end. The
    ``n`` answers stream together, each chunk naming its choice's index. When the client disconnects, the
    jobs are cancelled (the engine stops them at their next token)."""
    ticket = await state.admission.enter(deadline)
    events: asyncio.Queue = asyncio.Queue()
    jobs: list[GenJob] = []
    try:
        for copy in range(req.n):  # one at a time: the ones submitted before a failure are cancelled below
            jobs.append(start_job(state, req, prompt_ids, max_tokens, copy, events)[0])
    except BaseException:
        for job in jobs:
            job.cancelled = True
        ticket.release()
        raise

    def close() -> None:
        for job in jobs:
            job.cancelled = True  # no-op when finished; stops decoding when the client went away
        ticket.release()

    return OwnedStream(sse_events(state, req, len(jobs), events, chat, deadline, close), close,
                       media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _chunk(base: dict, chat: bool, delta: dict | None, text: str, finish: str | None, index: int = 0,
           logprobs: dict | None = None) -> str:
    choice = {"index": index, "finish_reason": finish, "logprobs": logprobs}
    choice.update({"delta": delta or {}} if chat else {"text": text})
    return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"


async def sse_events(state, req: Sampling, answers: int, events: asyncio.Queue, chat: bool, deadline: float,
                     close) -> AsyncIterator[str]:
    """The chunks of ``answers`` jobs sharing ``events``: a role chunk per choice (chat), their deltas as they
    come, a finish chunk per choice; usage (when asked) and the log line once every answer is done."""
    start = time.monotonic()
    rid, created = uuid.uuid4().hex[:24], int(time.time())
    base = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{rid}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created, "model": req.model}
    done: dict[int, dict] = {}
    sent: dict[int, str] = {}  # per choice: the text streamed so far
    waiting: dict[int, list] = {}  # per choice: (TokenLogprob, offset) of tokens whose text was not sent yet

    def logprobs(index: int, text: str = "") -> dict | None:
        entries = waiting.pop(index, None)
        return None if entries is None else choice_logprobs(state, {"text": text}, chat, entries)

    try:
        if chat:
            for index in range(answers):
                yield _chunk(base, chat, {"role": "assistant", "content": ""}, "", None, index)
        while len(done) < answers:
            try:
                index, kind, payload = await asyncio.wait_for(events.get(), max(0.001, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                err = APIError(504, "request timed out", "timeout")
                yield f"data: {json.dumps(err.body())}\n\n"
                break
            if kind == "logprobs":
                waiting.setdefault(index, []).append(payload)
            elif kind == "delta":
                sent[index] = sent.get(index, "") + payload
                yield _chunk(base, chat, {"content": payload}, payload, None, index, logprobs(index, sent[index]))
            elif kind == "error":
                yield f"data: {json.dumps(APIError(503, payload, 'generation_failed').body())}\n\n"
                break
            else:
                done[index] = payload
                if not chat and stop_entry(payload):  # the token that ended the answer, in its finish chunk
                    waiting.setdefault(index, []).extend(stop_entry(payload))
                yield _chunk(base, chat, {}, "", payload["finish_reason"], index, logprobs(index, payload["text"]))
        if len(done) == answers:
            finished = [done[i] for i in range(answers)]
            account(state, finished, time.monotonic() - start, answers)
            used = usage(finished, answers)
            if (req.stream_options or {}).get("include_usage"):
                yield f"data: {json.dumps({**base, 'choices': [], 'usage': used})}\n\n"
            state.log.write(event="stream_done", model=req.model,
                            output=state.log.text(" | ".join(d["text"] for d in finished)),
                            prompt_tokens=used["prompt_tokens"], completion_tokens=used["completion_tokens"])
        yield "data: [DONE]\n\n"
    finally:
        close()
