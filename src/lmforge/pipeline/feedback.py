"""`lmforge feedback`: sample answers from a run (or a model) and collect human judgements into a store.

TARGET is a run folder (its trained model) or a model name / folder. Prompts come from a file
(.txt: one per line; .jsonl: a column) or, for a run folder, its held-out prompts. Judgements go to
the output folder (see :mod:`lmforge.data.feedback`), durably, one by one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lmforge.errors import UserError


@dataclass(frozen=True)
class FeedbackTarget:
    """What answers are sampled from, and the prompts to answer."""

    model: Any
    tokenizer: Any
    prompts: list[str]
    source: str


def run_feedback(target: str, out: str, ask: Callable[[str], str], *, prompts_file: str | None = None,
                 field: str = "prompt", mode: str = "pair", k: int = 2, limit: int | None = None,
                 max_new_tokens: int = 128, temperature: float = 0.8, annotator: str | None = None,
                 say: Callable[[str], None] = print) -> None:
    """Sample ``k`` answers per prompt and ask the user (``ask``) to judge them; every answer is stored at once."""
    from lmforge.data.feedback import FeedbackStore, collect

    if k < 1 or (mode == "pair" and k < 2):
        raise UserError("pair mode needs -k 2 or more answers per prompt", where="-k")
    loaded = load_target(target, prompts_file, field)
    prompts = loaded.prompts[:limit] if limit else loaded.prompts
    from lmforge.outputs import claim_output_dir

    run_folder = (Path(target) / "config.yaml").is_file()  # a run folder is lmforge's; a model folder is an input
    inputs = ([prompts_file] if prompts_file else []) + ([] if run_folder else [target])
    claim_output_dir(out, "feedback", inputs=inputs, where="--out")
    store = FeedbackStore(out)
    meta = {"model": loaded.source, "sampling": {"temperature": temperature, "max_new_tokens": max_new_tokens, "k": k},
            "annotator": annotator, "prompts": prompts_file or f"{loaded.source} (held-out)"}

    def sample(prompt: str, n: int) -> list[str]:
        return sample_answers(loaded.model, loaded.tokenizer, prompt, n, max_new_tokens, temperature)

    try:
        collect(prompts, sample, ask, store, mode=mode, k=k, meta=meta)
    except KeyboardInterrupt:
        say(f"\ninterrupted: every judgement given so far is saved in {store.folder}")


def load_target(target: str, prompts_file: str | None, field: str) -> FeedbackTarget:
    """The model to sample from and the prompts, for a run folder or a model name."""
    folder = Path(target)
    if folder.is_dir() and (folder / "config.yaml").is_file():
        from lmforge.data.messages import prompt_messages
        from lmforge.pipeline.session import restore_session

        session = restore_session(folder)
        if prompts_file:
            prompts = read_prompts(Path(prompts_file), field)
        elif session.plan.generative:
            prompts = [prompt_messages(r, session.config.data)[-1]["content"] for r in session.records(session.reported)]
        else:  # preference pairs carry their prompt
            prompts = [r["prompt"] for r in session.records(session.reported) if "prompt" in r]
        if not prompts:
            raise UserError("the run's held-out data holds no prompts", where=str(folder),
                            hint="pass --prompts FILE (.txt, one prompt per line, or .jsonl)")
        return FeedbackTarget(session.model, session.tokenizer, prompts, str(folder))
    if not prompts_file:
        raise UserError("--prompts is needed when TARGET is a model rather than a run folder", where="--prompts")
    from lmforge.config.schema import ModelConfig
    from lmforge.model import load_model, load_tokenizer
    from lmforge.model.task import TaskInfo

    cfg = ModelConfig(name=target)
    return FeedbackTarget(load_model(cfg, TaskInfo("causal_lm")), load_tokenizer(cfg),
                          read_prompts(Path(prompts_file), field), target)


def read_prompts(path: Path, field: str) -> list[str]:
    """Prompts from a .txt (one per non-empty line) or .jsonl (``field`` of each row) file."""
    if not path.is_file():
        raise UserError("prompts file not found", where=str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        return [line.strip() for line in lines if line.strip()]
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"malformed JSON: {exc.msg}", where=f"{path}:{number}") from None
        if field not in row:
            raise UserError(f"no '{field}' field", where=f"{path}:{number}", hint="pick the prompt column with --field")
        prompts.append(str(row[field]))
    return prompts


def sample_answers(model, tokenizer, prompt: str, k: int, max_new_tokens: int, temperature: float) -> list[str]:
    """k sampled answers to ``prompt`` (chat template, stop at end of turn, special tokens removed)."""
    import torch

    from lmforge.data.chat import render_chat
    from lmforge.evaluate.generate import stop_token_ids

    text = render_chat(tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True)
    device = next(model.parameters()).device
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    stops = stop_token_ids(tokenizer, model)
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                             temperature=temperature, top_p=1.0, top_k=None, max_new_tokens=max_new_tokens,
                             num_return_sequences=k, eos_token_id=stops or None,
                             pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0])
    answers = []
    for row in out[:, ids.shape[1]:].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        answers.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return answers
