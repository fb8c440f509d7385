"""The usual run: one dataset (``data.train`` / ``validation`` / ``test``, optionally prepared), one head.

:class:`SingleTask` has the same methods as :class:`lmforge.pipeline.multitask.MultiTask`; a Session
holds one of them and commands call it without branching on multi-task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from lmforge import progress, status
from lmforge.config import RunConfig
from lmforge.data.splits import HELD_OUT
from lmforge.errors import UserError

Say = Callable[[str], None]


class SingleTask:
    """The usual run: one dataset (``data.train`` / ``validation`` / ``test``, optionally prepared), one head."""

    def __init__(self, splits, data_cfg):
        self.splits = splits
        self.data_cfg = data_cfg

    @classmethod
    def load(cls, config: RunConfig, say: Say, *, scratch: Path | None = None,
             prepared: Path | None = None) -> "SingleTask":
        if config.data.prepare is not None:
            from lmforge.pipeline.prepare import prepare_splits, read_prepared

            if prepared is not None:  # what data.prepare wrote for this run: read, not made again
                return cls(read_prepared(prepared, say), config.data)
            return cls(prepare_splits(config, out_dir=scratch, say=say, kept=scratch is None), config.data)
        from lmforge.data.splits import load_splits

        return cls(load_splits(config.data, config.run.seed), config.data)

    def preview(self, tokenizer, **options) -> str:
        """Training examples rendered as the model sees them (see :func:`lmforge.data.preview.preview`)."""
        from lmforge.data.preview import preview

        return preview(self.splits.train, tokenizer, self.data_cfg, **options)

    def describe(self, say: Say) -> None:
        """What the data holds beyond the counts open_session prints (lmforge.data.health)."""
        from lmforge.data.health import data_warnings

        for line in data_warnings(self.splits, self.data_cfg.format, prepared=self.data_cfg.prepare is not None):
            say(f"  {line}")

    def task_info(self, objective):
        from lmforge.data.encode import label_set

        classify = objective.spec.head == "sequence_classification"
        records = self.splits.train + self.splits.validation + self.splits.test
        return objective.task_info(label_set(records, self.data_cfg) if classify else None)

    def load_model(self, model_cfg, task, **load_kwargs):
        from lmforge.model import load_model

        return load_model(model_cfg, task, **load_kwargs)

    def encode(self, objective, tokenizer, config: RunConfig, say: Say,
               train: bool = True) -> tuple[Sequence[dict], dict[str, list[dict]]]:
        """Training features (none unless ``train``), and the features of each held-out part
        (``eval.max_examples`` applies to each)."""
        from lmforge.data.encode import length_note

        def encoded(part: str, records: list[dict]):
            out = objective.encode(records, tokenizer, config.data)
            note = length_note(out, len(records), config.data.max_length)
            if note:
                say(f"  {part}: {note}")
            return out

        if not train:
            features: Sequence[dict] = []
        elif config.runtime.memory.shards:
            features = sharded_features(config, self.splits.train, objective, tokenizer, say)
        else:
            features = encoded("train", self.splits.train)
        limit = config.eval.max_examples
        held = {part: getattr(self.splits, part)[:limit] if limit else getattr(self.splits, part) for part in HELD_OUT}
        return features, {part: encoded(part, records) if records else [] for part, records in held.items()}

    def collate(self, objective, tokenizer) -> Callable[[list[dict]], dict]:
        return lambda feats: objective.collate(feats, tokenizer)

    def evaluate(self, objective, model, features, collate, batch_size: int, per_example: bool) -> dict:
        from lmforge.evaluate.run import evaluate

        return evaluate(objective, model, features, collate, batch_size, per_example=per_example)

    def summary(self, train_features) -> dict:
        return {}

    def export_model(self, session, out: Path, prompts: list) -> tuple[dict, dict]:
        """The merged model (when the plan exports one), parity-checked: ``(written, parity)``."""
        if not session.plan.export_merged:
            return {}, {}
        from lmforge.export import export_merged, verify_merged

        cfg = session.config.export
        export_merged(session.method, session.model, session.tokenizer, out / "merged", cfg.dtype)
        status.set_phase("parity")
        with progress.phase("parity"):
            parity = verify_merged(session.model, session.tokenizer, out / "merged", prompts, dtype=cfg.dtype,
                                   report_path=out / "merged" / "parity.json").to_dict()
        return {"merged": str(out / "merged")}, {"merged": parity}

    def usage(self, session, export_dir: Path) -> str:
        return f"serve it:   lmforge serve {session.run_dir}"


def sharded_features(config: RunConfig, records: list, objective, tokenizer, say: Say):
    """Training features memory-mapped from ``runtime.memory.shards`` (tokenized and packed once, block by
    block; reused while data, tokenizer and settings are unchanged). Only the main process writes."""
    from lmforge.data.shards import encode_to_shards
    from lmforge.train.launch import is_main_process

    where = config.runtime.memory.shards
    folder = Path(config.run.dir) / "shards" if where == "auto" else Path(where)
    key = {"data": config.data.model_dump(mode="json"), "model": config.model.model_dump(mode="json"),
           "objective": config.objective_name, "objective_params": config.objective and config.objective.params,
           "vocab": len(tokenizer)}
    pack = config.data.max_length if config.data.packing else None
    from lmforge.data.encode import Encoded, length_note

    blocks: list = []  # each block's encoding, for what was lost or cut in all of them

    def encode(part: list[dict]):
        blocks.append(objective.encode(part, tokenizer, config.data))
        return blocks[-1]

    try:
        shards = encode_to_shards(records, encode, folder, key=key, pack_length=pack, write=is_main_process())
    except ValueError as exc:
        raise UserError(f"cannot use runtime.memory.shards: {exc}", where="runtime.memory.shards",
                        hint="point it at a new folder or one lmforge wrote shards into") from exc
    say(f"shards: {len(shards)} {'packed rows' if pack else 'examples'} ({shards.meta['tokens']} tokens) "
        f"memory-mapped from {folder}")
    note = length_note(Encoded.combined(blocks), len(records), config.data.max_length) if blocks else None
    if note:  # reused shards encode nothing: said when they were written
        say(f"  train: {note}")
    return shards
