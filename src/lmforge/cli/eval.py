"""`lmforge eval RUN_OR_CONFIG [--data FILE]`: evaluate a finished run (or a config's base model) on held-out data."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run's trained model (or a config's base model) on held-out data")
    p.add_argument("target", help="a run folder (runs/NAME) or a run config YAML")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. eval.max_examples=200")
    p.add_argument("--data", default=None, help="held-out data file / folder / asset:NAME (default: the run's held-out split)")
    p.add_argument("--base", action="store_true", help="evaluate the base model, without the trained weights")
    p.add_argument("--generate", type=int, default=0, metavar="N",
                   help="also score greedy answers on N held-out chat/instruction examples (EM, F1, ROUGE, BLEU)")
    p.add_argument("--out", default=None, help="report folder (default <run>/eval)")
    p.add_argument("--judge-url", default=None,
                   help="grade answers with an LLM judge at this OpenAI-compatible URL (ends in /v1; sets eval.judge)")
    p.add_argument("--judge-model", default=None, help="model name the judge endpoint serves")
    p.add_argument("--judge-key-env", default=None, help="environment variable holding the judge API key")
    p.set_defaults(handler=run)


def run(args) -> int:
    from lmforge.errors import UserError
    from lmforge.pipeline import format_metrics, run_eval

    overrides = list(args.overrides)
    if args.judge_url or args.judge_model:
        if not (args.judge_url and args.judge_model):
            raise UserError("the judge needs both --judge-url and --judge-model", where="--judge-url")
        overrides += [f"eval.judge.url={args.judge_url}", f"eval.judge.model={args.judge_model}"]
        if args.judge_key_env:
            overrides.append(f"eval.judge.api_key_env={args.judge_key_env}")
    metrics = run_eval(args.target, overrides, base=args.base, data=args.data, generate=args.generate,
                       out_dir=args.out)
    print(format_metrics(metrics))
    return 0
