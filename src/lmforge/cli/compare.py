"""`lmforge compare CONFIG [KEY=VALUE ...] [--run RUN_DIR]`: prompting vs RAG vs fine-tuning on held-out data."""

from __future__ import annotations

from lmforge.cli.args import add_config_args


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="measure the base model zero-/few-shot, with RAG, and the fine-tuned model on the same held-out set",
    )
    add_config_args(p)
    p.add_argument("--run", metavar="RUN_DIR", help="the trained run folder (default: the config's run folder)")
    p.add_argument("--retrievers", default="bm25,dense",
                   help="comma-separated RAG retrievers: bm25, dense (MiniLM embeddings); 'none' to skip RAG")
    p.add_argument("--few-shot", type=int, default=3, help="demonstrations for the few-shot system (0: skip)")
    p.add_argument("--top-k", type=int, default=3, help="passages retrieved per question")
    p.add_argument("--documents", metavar="PATH",
                   help="your own documents for RAG: .txt / .md files (a file, folder or pattern) or rows with a "
                        "'text' column, cut into passages of up to 120 words (default: the training examples)")
    p.add_argument("--max-examples", type=int, default=None, help="first N held-out examples (default eval.max_examples)")
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint for LLM-as-judge, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--judge-model", help="model name the judge endpoint serves")
    p.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="environment variable holding the judge API key")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.pipeline import judge_endpoint, run_comparison
    from lmforge.errors import UserError

    retrievers = tuple(r.strip() for r in args.retrievers.split(",") if r.strip() and r.strip() != "none")
    unknown = [r for r in retrievers if r not in ("bm25", "dense")]
    if unknown:
        raise UserError(f"unknown retriever {unknown[0]!r}", where="--retrievers", hint="use bm25, dense or none")
    for flag, value in (("--few-shot", args.few_shot), ("--top-k", args.top_k), ("--max-examples", args.max_examples)):
        if value is not None and value < (0 if flag == "--few-shot" else 1):
            raise UserError(f"{flag} must be {'>= 0' if flag == '--few-shot' else '>= 1'}, got {value}", where=flag)
    judge = None
    if args.judge_url or args.judge_model:
        if not (args.judge_url and args.judge_model):
            raise UserError("the judge needs both --judge-url and --judge-model", where="--judge-url")
        judge = judge_endpoint(args.judge_url, args.judge_model, args.judge_key_env)
    run_comparison(args.config, args.overrides, run_dir=args.run, retrievers=retrievers, few_shot=args.few_shot,
                   top_k=args.top_k, max_examples=args.max_examples, judge=judge, documents=args.documents)
    return 0
