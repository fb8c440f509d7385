"""The Session every command works on: a run's data, tokenizer, model with its method, objective, features.

:func:`open_session` builds one from a config, :func:`restore_session` from a finished run folder.
A Session is frozen: a command that swaps the model (e.g. for the best checkpoint) makes a new one
with :meth:`Session.with_model`. How the data maps to heads (one task, or several with
``data.tasks``) is the Session's ``tasks`` object: :class:`SingleTask` here, ``MultiTask`` in
:mod:`lmforge.pipeline.multitask`; commands call it and never branch on multi-task themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from lmforge import status
from lmforge.config import RunConfig
from lmforge.errors import UserError
from lmforge.pipeline.plan import RunPlan, plan_run

Say = Callable[[str], None]


@dataclass(frozen=True)
class Session:
    """Everything a run has loaded, built once and shared by train / eval / export."""

    plan: RunPlan
    run_dir: Path
    tokenizer: Any
    objective: Any  # lmforge.objectives.base.Objective
    method: Any  # lmforge.methods.base.Method
    tasks: Any  # SingleTask | lmforge.pipeline.multitask.MultiTask
    task: Any  # lmforge.model.task.TaskInfo: the head(s) the model was loaded with
    model: Any  # torch.nn.Module: the base with the method applied
    train_features: Sequence[dict]
    eval_features: list[dict]
    collate: Callable[[list[dict]], dict]

    @property
    def config(self) -> RunConfig:
        return self.plan.config

    @property
    def splits(self):
        return self.tasks.splits

    def with_model(self, model) -> "Session":
        return replace(self, model=model)

    def evaluate(self, model=None, per_example: bool = False) -> dict:
        """Held-out metrics of ``model`` (default: the session's), plus generation metrics when configured."""
        cfg = self.config
        batch_size = cfg.eval.batch_size or cfg.train.batch_size
        metrics = self.tasks.evaluate(self.objective, model or self.model, self.eval_features, self.collate,
                                      batch_size, per_example)
        if cfg.eval.generate_metrics and self.plan.generative:  # values, intervals and per-example rows
            from lmforge.evaluate.intervals import add_generation

            add_generation(metrics, generation_rows(self, cfg.eval.generate_metrics, model), seed=cfg.run.seed)
        return metrics

    def generations(self, model=None) -> list[dict]:
        """Greedy answers on the first held-out prompts (generative formats only)."""
        cfg = self.config
        n = max(cfg.eval.generations, cfg.eval.judge.examples if cfg.eval.judge else 0)
        if n == 0 or not self.plan.generative:
            return []
        from lmforge.evaluate.generate import sample_generations

        return sample_generations(model or self.model, self.tokenizer, self.splits.eval, cfg.data, n,
                                  cfg.eval.max_new_tokens)


def generation_rows(s: Session, n: int, model=None) -> list[dict]:
    """Greedy answers on the first ``n`` held-out examples, with their references."""
    from lmforge.evaluate.generate import sample_generations

    return sample_generations(model or s.model, s.tokenizer, s.splits.eval, s.config.data, n,
                              s.config.eval.max_new_tokens)


def generation_scores(s: Session, n: int, model=None) -> dict:
    """Greedy answers on the first ``n`` held-out examples, scored against their references."""
    from lmforge.evaluate.textmetrics import generation_intervals

    rows = generation_rows(s, n, model)
    return generation_intervals([r["output"] for r in rows], [r["reference"] for r in rows], seed=s.config.run.seed)


def open_session(config: RunConfig, *, source: str = "<config>", say: Say = print) -> Session:
    """Load data, tokenizer and model, apply the method, encode features."""
    from lmforge.methods import build_method
    from lmforge.model import load_tokenizer
    from lmforge.objectives import build_objective
    from lmforge.pipeline.multitask import MultiTask

    plan = plan_run(config, source)
    tasks = MultiTask.load(config, plan.objective.head) if config.data.tasks else SingleTask.load(config, say)
    say(f"data: {len(tasks.splits.train)} train / {len(tasks.splits.eval)} held-out examples ({config.data.format})")
    tasks.describe(say)
    tokenizer = load_tokenizer(config.model)
    objective = build_objective(plan.objective.name, plan.objective_params)
    task = tasks.task_info(objective)
    method = build_method(plan.method.name, plan.method_params)
    say(f"model: loading {config.model.name} ...")
    from lmforge.train.runtime import seed_everything

    seed_everything(config.run.seed)  # new heads and adapter weights are initialised from run.seed
    model = method.apply(tasks.load_model(config.model, task, **method.load_kwargs()), task)
    if hasattr(objective, "bind"):  # preference objectives snapshot their reference model here
        objective.bind(model, tokenizer)
    if config.train.memory.activation_checkpointing:
        from lmforge.train.checkpointing import enable_activation_checkpointing

        ac = config.train.memory.activation_checkpointing
        enable_activation_checkpointing(model, "all" if ac is True else int(ac))
    train_features, eval_features = tasks.encode(objective, tokenizer, config, say)
    if config.data.packing and isinstance(train_features, list):  # shards are packed as they are written
        from lmforge.data.packing import pack_features

        n_examples = len(train_features)
        train_features = pack_features(list(train_features), config.data.max_length)
        say(f"packing: {n_examples} examples -> {len(train_features)} rows of up to {config.data.max_length} tokens")
    if not train_features:
        raise UserError("no training example is left after encoding", where="data.train",
                        hint="check data.max_length and that examples have a completion to train on")
    return Session(plan=plan, run_dir=Path(config.run.dir), tokenizer=tokenizer, objective=objective, method=method,
                   tasks=tasks, task=task, model=model, train_features=train_features, eval_features=eval_features,
                   collate=tasks.collate(objective, tokenizer))


def rebuild_model(s: Session) -> Session:
    """The session with a freshly loaded base and the method applied again (no trained weights)."""
    return s.with_model(s.method.apply(s.tasks.load_model(s.config.model, s.task, **s.method.load_kwargs()), s.task))


def restore_session(run_dir: str | Path, overrides: Sequence[str] = (), *, trained: bool = True,
                    say: Say = print) -> Session:
    """Rebuild a finished run from its folder: saved config, base model, method, best trained weights."""
    from lmforge.config import load_config

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError("not a run folder (no config.yaml inside)", where=str(run_dir),
                        hint="pass the folder a `lmforge train` run wrote, e.g. runs/quickstart")
    config = load_config(cfg_path, list(overrides) + [f"run.output_dir={run_dir}"])
    s = open_session(config, source=str(cfg_path), say=say)
    if trained:
        from lmforge.train.checkpoint import load_trainable

        ckpt = best_checkpoint(run_dir)
        if ckpt is None:
            raise UserError("the run has no checkpoint yet", where=str(run_dir), hint="train it first (lmforge train)")
        load_trainable(s.model, ckpt)
    return s


def best_checkpoint(run_dir: Path) -> Path | None:
    """``checkpoints/best`` when the run kept one, else ``checkpoints/last``, else None."""
    return next((run_dir / "checkpoints" / n for n in ("best", "last") if (run_dir / "checkpoints" / n).exists()), None)


class SingleTask:
    """The usual run: one dataset (``data.train`` / ``data.eval``, optionally prepared), one head."""

    def __init__(self, splits, data_cfg):
        self.splits = splits
        self.data_cfg = data_cfg

    @classmethod
    def load(cls, config: RunConfig, say: Say) -> "SingleTask":
        if config.data.prepare is not None:
            from lmforge.pipeline.prepare import prepare_splits

            return cls(prepare_splits(config, say=say), config.data)
        from lmforge.data.splits import load_splits

        return cls(load_splits(config.data, config.run.seed), config.data)

    def describe(self, say: Say) -> None:
        """Nothing beyond the counts open_session prints."""

    def task_info(self, objective):
        from lmforge.data.encode import label_set

        classify = objective.spec.head == "sequence_classification"
        return objective.task_info(label_set(self.splits.train + self.splits.eval, self.data_cfg) if classify else None)

    def load_model(self, model_cfg, task, **load_kwargs):
        from lmforge.model import load_model

        return load_model(model_cfg, task, **load_kwargs)

    def encode(self, objective, tokenizer, config: RunConfig, say: Say) -> tuple[Sequence[dict], list[dict]]:
        train = (sharded_features(config, self.splits.train, objective, tokenizer, say) if config.train.memory.shards
                 else objective.encode(self.splits.train, tokenizer, config.data))
        records = self.splits.eval[: config.eval.max_examples] if config.eval.max_examples else self.splits.eval
        return train, objective.encode(records, tokenizer, config.data)

    def collate(self, objective, tokenizer) -> Callable[[list[dict]], dict]:
        return lambda feats: objective.collate(feats, tokenizer)

    def evaluate(self, objective, model, features, collate, batch_size: int, per_example: bool) -> dict:
        from lmforge.evaluate.run import evaluate

        return evaluate(objective, model, features, collate, batch_size, per_example=per_example)

    def summary(self, train_features) -> dict:
        return {}

    def export_model(self, s: Session, out: Path, prompts: list) -> tuple[dict, dict]:
        """The merged model (when the plan exports one), parity-checked: ``(written, parity)``."""
        if not s.plan.export_merged:
            return {}, {}
        from lmforge.export import export_merged, verify_merged

        cfg = s.config.export
        export_merged(s.method, s.model, s.tokenizer, out / "merged", cfg.dtype)
        status.set_phase("parity")
        parity = verify_merged(s.model, s.tokenizer, out / "merged", prompts, dtype=cfg.dtype,
                               report_path=out / "merged" / "parity.json").to_dict()
        return {"merged": str(out / "merged")}, {"merged": parity}

    def usage(self, s: Session, export_dir: Path) -> str:
        return f"serve it:   lmforge serve {s.run_dir}"


def sharded_features(config: RunConfig, records: list, objective, tokenizer, say: Say):
    """Training features memory-mapped from ``train.memory.shards`` (tokenized and packed once, block by
    block; reused while data, tokenizer and settings are unchanged). Only the main process writes."""
    from lmforge.data.shards import encode_to_shards
    from lmforge.train.launch import is_main_process

    where = config.train.memory.shards
    folder = Path(config.run.dir) / "shards" if where == "auto" else Path(where)
    key = {"data": config.data.model_dump(mode="json"), "model": config.model.model_dump(mode="json"),
           "objective": config.objective_name, "objective_params": config.objective and config.objective.params,
           "vocab": len(tokenizer)}
    pack = config.data.max_length if config.data.packing else None
    try:
        shards = encode_to_shards(records, lambda part: objective.encode(part, tokenizer, config.data), folder, key=key,
                                  pack_length=pack, write=is_main_process())
    except ValueError as exc:
        raise UserError(f"cannot use train.memory.shards: {exc}", where="train.memory.shards",
                        hint="point it at a new folder or one lmforge wrote shards into") from exc
    say(f"shards: {len(shards)} {'packed rows' if pack else 'examples'} ({shards.meta['tokens']} tokens) "
        f"memory-mapped from {folder}")
    return shards
