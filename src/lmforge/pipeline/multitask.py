"""Multi-task runs (``data.tasks``): every multi-task decision of every command lives here.

A run with ``data.tasks`` trains several named datasets at once. Each task is an ordinary data
section (its own format, columns, labels, system prompt: :func:`task_sections`), loaded and encoded
by the usual stage code; features are tagged with their task index and mixed by ``data.mixing``
(:mod:`lmforge.data.tasks`). Classification tasks get one head each on a shared encoder
(:mod:`lmforge.model.multihead`); causal-LM tasks share the one LM head. Evaluation reports
``task/<name>/<metric>`` next to the overall metrics (:mod:`lmforge.evaluate.tasks`).

:class:`MultiTask` has the same methods as :class:`lmforge.pipeline.single.SingleTask`, so commands
call it without branching; :func:`check_config` holds every "not with data.tasks" rule.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

from lmforge.atomic import atomic_write_text
from lmforge.config import RunConfig
from lmforge.config.schema import DataConfig
from lmforge.errors import UserError

Say = Callable[[str], None]
HEADED = "sequence_classification"  # objectives with this head get one head per task


def task_sections(data: DataConfig) -> list[DataConfig]:
    """One ordinary data section per task: the task's fields over the top-level ones, ``train`` / ``eval``
    from the task (a field set to null inherits). UserError names a bad task field."""
    from pydantic import ValidationError

    shared = data.model_dump(exclude={"tasks", "mixing", "temperature", "train", "validation", "test", "prepare"})
    sections = []
    for i, task in enumerate(data.tasks or []):
        own = task.model_dump(include=task.model_fields_set - {"name", "weight"})
        values = {**shared, **{k: v for k, v in own.items() if v is not None}}
        try:
            sections.append(DataConfig.model_validate(values))
        except ValidationError as exc:
            err = exc.errors()[0]
            path = [f"data.tasks.{i}", *(str(p) for p in err["loc"])]
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            field, sep, rest = msg.partition(": ")
            if not err["loc"] and sep and " " not in field:  # a model validator's "columns.x: ..." message
                path, msg = path + [field], rest
            raise UserError(msg, where=".".join(path)) from None
    return sections


def check_config(config: RunConfig, objective, where: str) -> None:
    """Every rule a multi-task run adds (torch-free; called by plan_run). No-op without ``data.tasks``."""
    if not config.data.tasks:
        return
    from lmforge.data.formats import check_data_config
    from lmforge.pipeline.plan import check_consumes

    kinds = []
    for i, section in enumerate(task_sections(config.data)):
        spec = check_data_config(section, f"{where}: data.tasks.{i}")
        if kinds and spec.kind != kinds[0][1]:  # one objective, one head kind per run
            raise UserError(f"'{spec.name}' cannot be mixed with '{kinds[0][0]}': one run mixes tasks of one kind "
                            "(classification, or instruction/chat, or text)", where=f"{where}: data.tasks.{i}.format")
        check_consumes(objective, spec, f"{where}: data.tasks.{i}.format")
        kinds.append((spec.name, spec.kind))
    unsupported = {"data.prepare": config.data.prepare, "runtime.memory.shards": config.runtime.memory.shards}
    for field, value in unsupported.items():
        if value:
            raise UserError(f"{field} is not supported with data.tasks yet", where=f"{where}: {field}",
                            hint=f"remove {field}")
    if objective.head != HEADED:
        return
    if config.export.merged or config.export.formats:
        raise UserError("a multi-task classifier (one head per task) is exported as export/multitask, not as a "
                        "merged transformers model or GGUF / ONNX", where=f"{where}: export",
                        hint="remove export.merged and export.formats")


def tasks_summary(data: DataConfig) -> str:
    """`` x N tasks, mixing M`` for a multi-task data section (validate's one-line summary), else ""."""
    return f" x {len(data.tasks)} tasks, mixing {data.mixing}" if data.tasks else ""


def open_tasks(config: RunConfig, head: str, say: Say, *, scratch: Path | None = None,
               prepared: Path | None = None):
    """The Session's task object: :class:`MultiTask` with ``data.tasks``, else
    :class:`~lmforge.pipeline.single.SingleTask` (``data.prepare``, when configured, writes into <run dir>/data,
    or into ``scratch``, a temporary folder the caller removes; or its earlier output ``prepared`` is read). The
    one place a command's path depends on multi-task."""
    if config.data.tasks:
        return MultiTask.load(config, head)
    from lmforge.pipeline.single import SingleTask

    return SingleTask.load(config, say, scratch=scratch, prepared=prepared)


class MultiTask:
    """Several named datasets in one run; see the module doc."""

    def __init__(self, tasks: list, splits, config: RunConfig, labels: list[list[str]] | None):
        self.tasks = tasks  # lmforge.data.tasks.TaskData, in data.tasks order
        self.splits = splits  # all tasks' records merged (counts, drift baseline, samples)
        self.config = config
        self.labels = labels  # per-task label sets when each task gets its own head, else None

    @classmethod
    def load(cls, config: RunConfig, head: str) -> "MultiTask":
        """Every task's splits; with a classification ``head``, every task's label set too."""
        from lmforge.data.encode import label_set
        from lmforge.data.tasks import load_tasks, merge_splits

        tasks = load_tasks(config.data.tasks, task_sections(config.data), config.run.seed)
        labels = ([label_set(t.splits.train + t.splits.validation + t.splits.test, t.data) for t in tasks]
                  if head == HEADED else None)
        return cls(tasks, merge_splits(tasks), config, labels)

    def preview(self, tokenizer, **options) -> str:
        """Training examples of each task rendered with its own format, columns and system prompt."""
        from lmforge.data.preview import preview

        return "\n".join(f"=== task {t.name} ({t.data.format}, weight {t.weight:g}) ===\n"
                         + preview(t.splits.train, tokenizer, t.data, **options) for t in self.tasks)

    def describe(self, say: Say) -> None:
        from lmforge.data.health import data_warnings

        for t in self.tasks:
            say(f"  task {t.name}: {len(t.splits.train)} train / {len(t.splits.validation)} validation / "
                f"{len(t.splits.test)} test "
                f"({t.data.format}, weight {t.weight:g})")
            for line in data_warnings(t.splits, t.data.format, prepared=self.config.data.prepare is not None):
                say(f"    {line}")

    def task_info(self, objective):
        """One head per task on a shared encoder (classification), else the objective's own head."""
        if not self.labels:
            return objective.task_info(None)
        from lmforge.model.task import TaskInfo

        return TaskInfo(HEADED, max(len(ls) for ls in self.labels), None,
                        tuple((t.name, tuple(ls)) for t, ls in zip(self.tasks, self.labels)))

    def load_model(self, model_cfg, task, **load_kwargs):
        from lmforge.model import load_model

        if not task.tasks:
            return load_model(model_cfg, task, **load_kwargs)
        from lmforge.model.multihead import build_multihead, single_head

        return build_multihead(load_model(model_cfg, single_head(task), **load_kwargs), task)

    def encode(self, objective, tokenizer, config: RunConfig, say: Say, train: bool = True) -> tuple[list, dict[str, list]]:
        """Train features (each task encoded with its own section, tagged with its index, mixed by
        ``data.mixing``; none unless ``train``) and each held-out part's (kept per task; ``eval.max_examples``
        applies per task)."""
        from lmforge.data.splits import HELD_OUT
        from lmforge.data.tasks import mix_features, tag_task, task_counts

        per_task: list = []
        held: dict[str, list] = {part: [] for part in HELD_OUT}
        limit = config.eval.max_examples
        from lmforge.data.encode import length_note

        def encoded(t, part: str, records: list[dict], extra: dict):
            out = objective.encode(records, tokenizer, t.data, **extra)
            note = length_note(out, len(records), t.data.max_length)
            if note:
                say(f"  task {t.name} {part}: {note}")
            return out

        for i, t in enumerate(self.tasks):
            extra = {"labels": self.labels[i]} if self.labels else {}
            if train:
                per_task.append(tag_task(encoded(t, "train", t.splits.train, extra), i))
            for part in HELD_OUT:
                records = getattr(t.splits, part)[:limit] if limit else getattr(t.splits, part)
                if records:
                    held[part] += tag_task(encoded(t, part, records, extra), i)
        if not train:
            return [], held
        mixed = mix_features(per_task, [t.weight for t in self.tasks], config.data.mixing, seed=config.run.seed,
                             temperature=config.data.temperature)
        counts = task_counts(mixed, len(self.tasks))
        say(f"mixing ({config.data.mixing}): " + ", ".join(f"{t.name} {n}" for t, n in zip(self.tasks, counts))
            + " training examples per epoch")
        return mixed, held

    def collate(self, objective, tokenizer) -> Callable[[list[dict]], dict]:
        """The objective's collate, plus each row's task index (``task``) when rows route to per-task heads."""
        if not self.labels:
            return lambda feats: objective.collate(feats, tokenizer)
        from lmforge.data.tasks import add_task_ids

        return lambda feats: add_task_ids(objective.collate(feats, tokenizer), feats)

    def evaluate(self, objective, model, features, collate, batch_size: int, per_example: bool) -> dict:
        """Overall and per-task (``task/<name>/<metric>``) metrics."""
        from lmforge.evaluate.tasks import evaluate_tasks

        names = [(t.name, self.labels[i] if self.labels else None) for i, t in enumerate(self.tasks)]
        return evaluate_tasks(objective, model, features, collate, batch_size, names, per_example=per_example)

    def summary(self, train_features) -> dict:
        """For the report's "data" section: the mixing and each task's format, size and weight."""
        from lmforge.data.tasks import task_counts

        packed = self.config.data.packing  # packed rows hold several examples: no per-task count
        mixed = [None] * len(self.tasks) if packed else task_counts(train_features, len(self.tasks))
        return {"mixing": self.config.data.mixing, "tasks": {
            t.name: f"{t.data.format}, {len(t.splits.train)} train / {len(t.splits.validation)} validation / "
                    f"{len(t.splits.test)} test, weight {t.weight:g}"
                    + (f", {n} per epoch" if n is not None else "") for t, n in zip(self.tasks, mixed)}}

    def export_model(self, session, out: Path, prompts: list) -> tuple[dict, dict]:
        """Several heads: export/multitask (no plain transformers class holds them); one LM head: merged."""
        if not self.labels:
            from lmforge.pipeline.single import SingleTask

            return SingleTask(self.splits, self.config.data).export_model(session, out, prompts)
        folder, parity = export_multitask(session, out / "multitask")
        return {"multitask": folder}, {"multitask": parity}

    def usage(self, session, export_dir: Path) -> str:
        if not self.labels:
            return f"serve it:   lmforge serve {session.run_dir}"
        return f"load it:    lmforge.model.multihead.load_multihead('{export_dir / 'multitask'}')"


def export_multitask(session, folder: Path) -> tuple[str, dict]:
    """The merged encoder + per-task heads (:func:`lmforge.model.multihead.save_multihead`), reloaded
    and compared with the run's model on a few held-out rows; returns ``(folder, parity dict)``."""
    import torch

    from lmforge.evaluate.run import model_device
    from lmforge.model.multihead import load_multihead, save_multihead

    save_multihead(session.method.merge(copy.deepcopy(session.model)), session.tokenizer, folder)
    device = model_device(session.model)
    batch = {k: v.to(device) for k, v in session.collate(session.held_out[session.reported][: session.config.export.parity_prompts]).items()
             if k != "labels"}
    reloaded = load_multihead(folder).to(device)
    with torch.no_grad():
        want, got = session.model(**batch).logits.float(), reloaded(**batch).logits.float()
    used = want > torch.finfo(torch.float32).min / 2  # padded label slots of other tasks are not compared
    diff = float((want - got)[used].abs().max())
    result: dict[str, Any] = {"passed": diff <= 1e-3, "max_abs_logit_diff": diff, "rows": int(batch["input_ids"].shape[0])}
    atomic_write_text(folder / "parity.json", json.dumps(result, indent=1))
    return str(folder), result
