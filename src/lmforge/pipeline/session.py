"""The Session every command works on: a run's data, tokenizer, model with its method, objective, features.

:func:`open_session` builds one from a config, :func:`restore_session` from a finished run folder.
A Session is frozen: a command that swaps the model (e.g. for the best checkpoint) makes a new one
with :meth:`Session.with_model`. How the data maps to heads (one task, or several with
``data.tasks``) is the Session's ``tasks`` object: ``SingleTask`` (:mod:`lmforge.pipeline.single`) or
``MultiTask`` (:mod:`lmforge.pipeline.multitask`); commands call it and never branch on multi-task themselves.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

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
    held_out: dict[str, list[dict]]  # "validation" / "test" -> features (a part may be empty)
    collate: Callable[[list[dict]], dict]

    @property
    def config(self) -> RunConfig:
        return self.plan.config

    @property
    def splits(self):
        return self.tasks.splits

    @property
    def reported(self) -> str:
        """The held-out part the before -> after numbers come from: "test", else "validation"."""
        return "test" if self.splits.test else "validation"

    @property
    def selection(self) -> str | None:
        """The held-out part that picks the best checkpoint and early-stops: "validation", or None (last step)."""
        return "validation" if self.splits.validation else None

    def records(self, part: str) -> list[dict]:
        return getattr(self.splits, part)

    def with_model(self, model) -> "Session":
        return replace(self, model=model)

    def evaluate(self, model=None, per_example: bool = False, part: str | None = None) -> dict:
        """Metrics of ``model`` (default: the session's) on held-out ``part`` (default: the reported one),
        plus generation metrics when configured."""
        cfg, part = self.config, part or self.reported
        batch_size = cfg.eval.batch_size or cfg.train.batch_size
        metrics = self.tasks.evaluate(self.objective, model or self.model, self.held_out[part], self.collate,
                                      batch_size, per_example)
        if cfg.eval.generate_metrics and self.plan.generative:  # values, intervals and per-example rows
            from lmforge.evaluate.intervals import add_generation

            add_generation(metrics, generation_rows(self, cfg.eval.generate_metrics, model, part), seed=cfg.run.seed)
        return metrics

    def generations(self, model=None) -> list[dict]:
        """Greedy answers on the first reported held-out prompts (generative formats only)."""
        cfg = self.config
        n = max(cfg.eval.generations, cfg.eval.judge.examples if cfg.eval.judge else 0)
        if n == 0 or not self.plan.generative:
            return []
        return generation_rows(self, n, model)


def generation_rows(session: Session, n: int, model=None, part: str | None = None) -> list[dict]:
    """Greedy answers on the first ``n`` examples of held-out ``part`` (default: reported), with their references."""
    from lmforge.evaluate.generate import sample_generations
    from lmforge.model.sampling import Sampling

    cfg = session.config
    return sample_generations(model or session.model, session.tokenizer, session.records(part or session.reported), cfg.data,
                              n, cfg.eval.max_new_tokens, sampling=Sampling(repetition_penalty=cfg.eval.repetition_penalty))


def generation_scores(session: Session, n: int, model=None) -> dict:
    """Greedy answers on the first ``n`` reported held-out examples, scored against their references."""
    from lmforge.evaluate.textmetrics import generation_intervals

    rows = generation_rows(session, n, model)
    return generation_intervals([r["output"] for r in rows], [r["reference"] for r in rows], seed=session.config.run.seed)


def open_session(config: RunConfig, *, source: str = "<config>", say: Say = print, train: bool = True,
                 scratch: bool = False, prepared: Path | None = None) -> Session:
    """Load data, tokenizer and model, apply the method, encode features (training features only with
    ``train``). data.prepare writes into <run dir>/data, or (``scratch``) into a temporary folder removed once
    the splits are read, or its earlier output ``prepared`` is read."""
    from lmforge.methods import build_method
    from lmforge.model import load_tokenizer
    from lmforge.objectives import build_objective
    from lmforge.pipeline.multitask import open_tasks

    plan = plan_run(config, source)
    with tempfile.TemporaryDirectory(prefix="lmforge-prepare-") if scratch else contextlib.nullcontext() as folder:
        tasks = open_tasks(config, plan.objective.head, say, scratch=Path(folder) / "data" if folder else None,
                           prepared=prepared)
    describe_splits(tasks.splits, config, say)
    tasks.describe(say)
    tokenizer = load_tokenizer(config.model)
    objective = build_objective(plan.objective.name, plan.objective_params)
    task = tasks.task_info(objective)
    method = build_method(plan.method.name, plan.method_params)
    say(f"model: loading {config.model.name} ...")
    from lmforge.train.runtime import seed_everything

    seed_everything(config.run.seed)  # new heads and adapter weights are initialised from run.seed
    model = method.apply(tasks.load_model(config.model, task, **method.load_kwargs()), task)
    objective.bind(model, tokenizer, lambda: method.reference(model))  # before any step changes the weights
    if config.runtime.memory.activation_checkpointing:
        from lmforge.train.checkpointing import enable_activation_checkpointing

        ac = config.runtime.memory.activation_checkpointing
        enable_activation_checkpointing(model, "all" if ac is True else int(ac))
    train_features, held_out = tasks.encode(objective, tokenizer, config, say, train=train)
    if config.data.packing and isinstance(train_features, list):  # shards are packed as they are written
        from lmforge.data.packing import pack_features

        n_examples = len(train_features)
        train_features = pack_features(list(train_features), config.data.max_length)
        say(f"packing: {n_examples} examples -> {len(train_features)} rows of up to {config.data.max_length} tokens")
    if train and not train_features:
        raise UserError("no training example is left after encoding", where="data.train",
                        hint="check data.max_length and that examples have a completion to train on")
    return Session(plan=plan, run_dir=Path(config.run.dir), tokenizer=tokenizer, objective=objective, method=method,
                   tasks=tasks, task=task, model=model, train_features=train_features, held_out=held_out,
                   collate=tasks.collate(objective, tokenizer))


def rebuild_model(session: Session) -> Session:
    """The session with a freshly loaded base and the method applied again (no trained weights)."""
    return session.with_model(session.method.apply(session.tasks.load_model(session.config.model, session.task, **session.method.load_kwargs()), session.task))


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
    # The run's data.prepare output is its record of what it trained and was measured on: read it as it is (the
    # inputs may have changed since); with data overridden (`eval --data`), prepare again in a temporary folder.
    # Either way the run folder's data/ is not rewritten, and no training features are made.
    prepared = run_dir / "data"
    data_overridden = any(o.split("=", 1)[0].strip().startswith("data.") for o in overrides)
    reuse = config.data.prepare is not None and not data_overridden and (prepared / "manifest.json").is_file()
    session = open_session(config, source=str(cfg_path), say=say, train=False, prepared=prepared if reuse else None,
                           scratch=not reuse)
    if trained:
        from lmforge.train.checkpoint import load_trainable

        ckpt = best_checkpoint(run_dir)
        if ckpt is None:
            raise UserError("the run has no checkpoint yet", where=str(run_dir), hint="train it first (lmforge train)")
        load_trainable(session.model, ckpt)
    return session


def best_checkpoint(run_dir: Path) -> Path | None:
    """``checkpoints/best`` when the run kept one, else ``checkpoints/last``, else None."""
    return next((run_dir / "checkpoints" / n for n in ("best", "last") if (run_dir / "checkpoints" / n).exists()), None)


def describe_splits(splits, config: RunConfig, say: Say) -> None:
    """Say how the data splits and which part does what (the task object's ``describe`` says the rest:
    lmforge.data.health)."""
    parts = [f"{len(splits.train)} train", f"{len(splits.validation)} validation", f"{len(splits.test)} test"]
    roles = "; validation picks the checkpoint, test is reported" if splits.test and splits.validation else ""
    say(f"data: {' / '.join(parts)} examples ({config.data.format}){roles}")
    if not splits.validation:
        say("  no validation data: the last step is kept (no checkpoint choice, no early stopping)")
    if not splits.test:
        say("  no test data: the reported numbers come from validation, which also picked the checkpoint (optimistic)")
