"""`lmforge data prepare` / `lmforge data preview`, and the prepared splits of runs with ``data.prepare``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lmforge.config import RunConfig
from lmforge.errors import UserError
from lmforge.pipeline.plan import plan_run

Say = Callable[[str], None]


def run_prepare(config: RunConfig, *, source: str = "<config>", out_dir: str | None = None, say: Say = print) -> Path:
    """`lmforge data prepare`: clean, deduplicate, redact, label-check and split; returns the output folder."""
    plan_run(config, source)
    result, _files = prepare_data(config, out_dir=out_dir, say=say)
    return result.out_dir


def run_preview(config: RunConfig, *, source: str = "<config>", n: int = 3, color: bool = False,
                marks: tuple[str, str] | None = None) -> str:
    """`lmforge data preview`: what a run says about its data (split counts, exact copies, small held-out parts,
    suspicious labels), then N training examples rendered with the trained tokens marked (per task; ``marks``:
    (opening, closing) around trained spans, see :func:`lmforge.data.preview.preview`).

    With ``data.prepare`` the examples are its output (redacted, normalised, labels fixed, deduplicated, split),
    as the run will train on them: prepared into a temporary folder outside the user's folders and removed, so
    the preview writes nothing of the user's. Model paraphrases (``augment.paraphrase``) are left out: they
    would load a second model for a look at the data."""
    import tempfile

    from lmforge.model import load_tokenizer
    from lmforge.pipeline.multitask import open_tasks
    from lmforge.pipeline.session import describe_splits

    plan = plan_run(config, source)
    tokenizer = load_tokenizer(config.model)  # a missing model is named before the data is read
    lines: list[str] = []  # what a run says about its data first: counts, copies, small parts, near copies, labels
    with tempfile.TemporaryDirectory(prefix="lmforge-preview-") as scratch:
        prepare, out = config.data.prepare, Path(scratch) / "data"
        if prepare is not None:
            config = _without_paraphrase(config)
        tasks = open_tasks(config, plan.objective.head, say=lambda _m: None, scratch=out)
        if (out / "manifest.json").is_file():
            lines.append(_prepared_line(out / "manifest.json", paraphrase=bool(prepare.augment.paraphrase)))
        describe_splits(tasks.splits, config, lines.append)
        tasks.describe(lines.append)
        return "\n".join(lines) + "\n\n" + tasks.preview(tokenizer, n=n, color=color, marks=marks)


def _prepared_line(manifest_path: Path, *, paraphrase: bool) -> str:
    import json

    from lmforge.data.prepare.audit import rules_summary

    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    kept = sum(part["examples"] for part in manifest["outputs"])
    return (f"data.prepare, as the run will apply it ({rules_summary(manifest['rules'])}; {kept} examples kept"
            + ("; model paraphrases left out" if paraphrase else "")
            + "). Its files and report are not kept: `lmforge data prepare` writes them")


def _without_paraphrase(config: RunConfig) -> RunConfig:
    prepare = config.data.prepare
    augment = prepare.augment.model_copy(update={"paraphrase": None})
    data = config.data.model_copy(update={"prepare": prepare.model_copy(update={"augment": augment})})
    return config.model_copy(update={"data": data})


def prepare_splits(config: RunConfig, *, out_dir: str | Path | None = None, say: Say = print, kept: bool = True):
    """Run the data-preparation rules (data.prepare) and return the prepared train / validation / test splits.

    Outputs, manifest and report go to ``out_dir`` (default <run dir>/data; ``kept`` False: a temporary folder the
    caller removes, and the line said does not point at it). The prepared splits are
    read back as lists (training needs them); :func:`prepare_data` alone streams and reads nothing back.
    """
    from lmforge.data.splits import Splits

    result, files = prepare_data(config, out_dir=out_dir, say=say, kept=kept)
    return Splits(result.train, result.validation, result.test, files)


def read_prepared(folder: Path, say: Say = print):
    """The splits an earlier data.prepare wrote into ``folder`` (a run's ``data/``), read back as they are."""
    import json

    from lmforge.data.prepare import PrepareResult
    from lmforge.data.splits import Splits

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    counts = {part["split"]: part["examples"] for part in manifest["outputs"]}
    result = PrepareResult(folder, counts, folder / "manifest.json", folder / "report.md")
    say(f"prepare: the run's prepared data ({folder}): train {counts['train']}, validation {counts['validation']}, "
        f"test {counts['test']}")
    return Splits(result.train, result.validation, result.test, [Path(p["path"]) for p in manifest["inputs"]])


def prepare_data(config: RunConfig, *, out_dir: str | Path | None = None, say: Say = print, kept: bool = True):
    """Prepare ``config.data`` into ``out_dir`` in bounded memory; returns (PrepareResult, input files).

    JSONL / CSV / plain-text inputs are read record by record (lmforge.data.splits.load_records_lazily);
    only counts are reported. UserError when no validation example is left.
    """
    from lmforge.config.prepare import PrepareConfig
    from lmforge.data.prepare import run_prepare as prepare
    from lmforge.data.splits import load_records_lazily
    from lmforge.model import load_tokenizer

    from lmforge.outputs import check_inputs, prepare_output_dir

    prepare_cfg = config.data.prepare or PrepareConfig()
    out, where = prepare_output_dir(config, out_dir)  # apart from the inputs; new, empty or an earlier prepare output
    streams = load_records_lazily(config.data)
    result = prepare(streams.train, config.data.format, prepare_cfg, out, inputs=streams.files, seed=config.run.seed,
                     split=config.data.split, validation_records=streams.validation, test_records=streams.test,
                     tokenizer=load_tokenizer(config.model),
                     paraphrase=paraphraser(prepare_cfg, config.run.seed, say),
                     check_out=lambda files: check_inputs(out, files, where))
    from lmforge.data.prepare.audit import rules_summary

    counts, rules = result.counts, rules_summary(result.rules)
    say(f"prepare: {streams.read} records -> train {counts['train']}, validation {counts['validation']}, "
        f"test {counts['test']} ({rules}); "
        + (f"report {result.report_path}" if kept else "prepared for this command only, not kept"))
    if not counts["validation"] and not counts["test"]:
        near = result.rules.get("dedup_near", {}).get("removed", 0) * 2 > streams.read
        raise UserError(f"data preparation left no held-out example ({streams.read} records -> train "
                        f"{counts['train']}; {rules})", where="data.split",
                        hint=("near-copy removal took most records: if they are distinct documents sharing a "
                              "template, raise data.prepare.dedup.threshold or set dedup.near: false; or " if near
                              else "") + "raise data.split.validation / data.split.test, or give data.validation / "
                             "data.test")
    return result, list(streams.files)


def paraphraser(prepare_cfg, seed: int, say: Say):
    """The model paraphraser ``augment.paraphrase`` names (loaded here: data may not import model), or None."""
    pcfg = prepare_cfg.augment.paraphrase
    if not pcfg:
        return None
    from lmforge.config.schema import ModelConfig
    from lmforge.data.prepare.paraphrase import ModelParaphraser
    from lmforge.model import load_model, load_tokenizer
    from lmforge.model.task import TaskInfo

    say(f"prepare: loading {pcfg.model} to paraphrase training texts ...")
    model_cfg = ModelConfig(name=pcfg.model)
    tokenizer = load_tokenizer(model_cfg)
    return ModelParaphraser(load_model(model_cfg, TaskInfo("causal_lm")).eval(), tokenizer, pcfg, seed)
