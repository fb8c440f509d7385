"""`lmforge feedback TARGET --prompts FILE --out DIR`: label sampled answers in the terminal.

TARGET is a run folder (its trained model) or a model name / folder. Prompts come from
``--prompts`` (.txt: one per line; .jsonl: the ``--field`` column) or, for a run folder, its
held-out prompts. Judgements go to DIR (see :mod:`lmforge.data.feedback`), durably, one by one.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("feedback", help="collect human judgements (A/B, tie, both bad, edits, good/bad) on sampled answers")
    p.add_argument("target", help="a run folder (runs/NAME) or a model (built-in name, HF folder)")
    p.add_argument("--prompts", help=".txt (one prompt per line) or .jsonl file; default: the run's held-out prompts")
    p.add_argument("--field", default="prompt", help="prompt column of a .jsonl prompts file (default: prompt)")
    p.add_argument("--out", required=True, help="folder for judgements.jsonl / preferences.jsonl / ratings.jsonl")
    p.add_argument("--mode", choices=("pair", "rate"), default="pair", help="compare k answers, or rate each good/bad")
    p.add_argument("-k", type=int, default=2, help="answers sampled per prompt (default 2)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--annotator", default=None, help="your name or id, stored with every judgement")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.data.feedback import FeedbackStore, collect

    if args.k < 1 or (args.mode == "pair" and args.k < 2):
        raise UserError("pair mode needs -k 2 or more answers per prompt", where="-k")
    model, tokenizer, prompts, source = load_target(args)
    if args.limit:
        prompts = prompts[: args.limit]
    from lmforge.outputs import claim_output_dir

    run_folder = (Path(args.target) / "config.yaml").is_file()  # a run folder is lmforge's; a model folder is an input
    inputs = [args.prompts] if args.prompts else []
    claim_output_dir(args.out, "feedback", inputs=inputs + ([] if run_folder else [args.target]), where="--out")
    store = FeedbackStore(args.out)
    meta = {"model": source, "sampling": {"temperature": args.temperature, "max_new_tokens": args.max_new_tokens,
                                          "k": args.k}, "annotator": args.annotator,
            "prompts": args.prompts or f"{source} (held-out)"}

    def sample(prompt: str, k: int) -> list[str]:
        return sample_answers(model, tokenizer, prompt, k, args.max_new_tokens, args.temperature)

    try:
        collect(prompts, sample, ask, store, mode=args.mode, k=args.k, meta=meta)
    except KeyboardInterrupt:
        print(f"\ninterrupted: every judgement given so far is saved in {store.folder}")
    return 0


def ask(question: str) -> str:
    """input(), with end of input meaning quit."""
    try:
        return input(question)
    except EOFError:
        return "q"


def load_target(args):
    """(model, tokenizer, prompts, source) for a run folder or a model name."""
    target = Path(args.target)
    if target.is_dir() and (target / "config.yaml").is_file():
        from lmforge.data import prompt_messages
        from lmforge.pipeline import restore_session

        s = restore_session(target)
        prompts = read_prompts(Path(args.prompts), args.field) if args.prompts else [
            r["prompt"] if "prompt" in r else prompt_messages(r, s.config.data)[-1]["content"]
            for r in s.splits.eval if "prompt" in r or "messages" in r or "instruction" in r]
        if not prompts:
            raise UserError("the run's held-out data holds no prompts", where=str(target),
                            hint="pass --prompts FILE (.txt, one prompt per line, or .jsonl)")
        return s.model, s.tokenizer, prompts, str(target)
    if not args.prompts:
        raise UserError("--prompts is needed when TARGET is a model rather than a run folder", where="--prompts")
    from lmforge.config.schema import ModelConfig
    from lmforge.model import load_model, load_tokenizer
    from lmforge.model.task import TaskInfo

    cfg = ModelConfig(name=args.target)
    return load_model(cfg, TaskInfo("causal_lm")), load_tokenizer(cfg), read_prompts(Path(args.prompts), args.field), args.target


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
