"""`lmforge quickstart`: the main job on the embedded default (LoRA on SmolLM2 with FiQA finance Q&A)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("quickstart", help="run the built-in demo: LoRA on smollm2-135m-instruct with FiQA")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.max_steps=10")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from importlib.resources import files

    from lmforge.config import load_config
    from lmforge.pipeline import run_train

    path = files("lmforge") / "quickstart.yaml"
    config = load_config(str(path), args.overrides)
    print(f"lmforge quickstart: {path.name} (copy it to start your own: lmforge train my.yaml)")
    run_train(config, source="quickstart.yaml", resume=args.resume)
    return 0
