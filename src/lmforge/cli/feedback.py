"""`lmforge feedback TARGET --prompts FILE --out DIR`: label sampled answers in the terminal.

TARGET is a run folder (its trained model) or a model name / folder. Prompts come from
``--prompts`` (.txt: one per line; .jsonl: the ``--field`` column) or, for a run folder, its
held-out prompts. Judgements go to DIR, durably, one by one (:mod:`lmforge.pipeline.feedback`).
"""

from __future__ import annotations

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
    from lmforge.pipeline import run_feedback

    run_feedback(args.target, args.out, ask, prompts_file=args.prompts, field=args.field, mode=args.mode, k=args.k,
                 limit=args.limit, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                 annotator=args.annotator)
    return 0


def ask(question: str) -> str:
    """input(), with end of input meaning quit."""
    try:
        return input(question)
    except EOFError:
        return "q"
