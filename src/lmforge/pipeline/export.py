"""`lmforge export` and the export phase of `lmforge train`: adapter, merged model, GGUF / ONNX, model
card, drift baseline. Every export is parity-checked against the run's model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from lmforge import progress, status
from lmforge.config.prepare import shareable_config
from lmforge.errors import UserError
from lmforge.pipeline.session import Session, restore_session

Say = Callable[[str], None]


def run_export(run_dir: str, overrides: Sequence[str] = (), *, say: Say = print) -> Path:
    """Re-export a finished run (e.g. with other ``export.*`` settings); returns the export folder."""
    session = restore_session(run_dir, overrides, say=say)
    results = Path(run_dir) / "results.json"
    report = json.loads(results.read_text()) if results.exists() else {"after": session.evaluate()}
    return export_session(session, report)


def export_session(session: Session, report: dict) -> Path:
    """Write the adapter / merged model / extra formats and the model card; returns the export folder.

    The folder (``export.dir``, else <run>/export) must be new, empty or an earlier export, apart from
    the inputs; it is assembled beside its place and appears whole (a kill, a full disk or a failed
    parity check leaves the previous one)."""
    from lmforge.atomic import atomic_dir
    from lmforge.outputs import export_output_dir, write_marker

    final = export_output_dir(session.config, session.run_dir)
    with atomic_dir(final) as out:
        write_exports(session, report, out, final)
        write_marker(out, "export")
    return final


def write_exports(session: Session, report: dict, out: Path, final: Path) -> None:
    """The exports and the model card, written into ``out`` (paths in the card name ``final``)."""
    from lmforge.export import export_adapter, file_sha256, write_model_card
    from lmforge.model.source import describe_base, lmforge_parent

    cfg = session.config
    session.model.eval()  # the parity reference is the model as evaluated (no dropout)
    written, parity = {}, {}
    prompts = parity_prompts(session)
    base = describe_base(cfg.model)  # the upstream id names the base; the local folder is a hint
    if cfg.export.adapter and session.plan.method.saves_adapter:
        export_adapter(session.method, session.model, out / "adapter", task=session.task, base=base)
        written["adapter"] = str(out / "adapter")
    model_written, model_parity = session.tasks.export_model(session, out, prompts)
    written.update(model_written)
    parity.update(model_parity)
    for fmt in cfg.export.formats:
        if "merged" not in written:
            raise UserError(f"export format {fmt} is built from the merged model", where="export.formats",
                            hint="keep export.merged on (the method must be mergeable)")
        status.set_phase("export")
        with progress.phase(fmt):
            written[fmt], parity[fmt] = export_format(session, fmt, out, prompts)
    card = {
        "base_model": base["id"], "base_model_path": base["path"], "base_gguf": base["gguf_file"],
        "base_parent": lmforge_parent(base["path"]),
        "head": session.task.head, "labels": list(session.task.labels or ()),
        "method": {"name": session.plan.method.name, **session.plan.method_params.model_dump(mode="json")},
        "objective": session.plan.objective.name,
        "data_files": [{"path": str(p), "sha256": file_sha256(p)} for p in session.splits.files],
        "config": shareable_config(cfg.model_dump(mode="json")),  # a card is shared: no listed personal terms
        "metrics": {side: {k: v for k, v in (report.get(side) or {}).items() if k != "per_example"}
                    for side in ("before", "after")},
        "exports": {k: str(final / Path(v).relative_to(out)) for k, v in written.items()},
        "parity": {k: {"passed": v["passed"], "max_abs_logit_diff": v["max_abs_logit_diff"]} for k, v in parity.items()},
    }
    for name in ("export", *(name for name in ("adapter", "merged") if name in written)):
        # each shareable folder carries the card (replacing peft's blank one), its metadata saying what it holds
        write_model_card(out if name == "export" else out / name, card, name)


def export_format(session: Session, fmt: str, out: Path, prompts: list) -> tuple[str, dict]:
    """GGUF (+ Ollama Modelfile) or ONNX from the merged folder, parity-checked against the run's model."""
    if fmt.startswith("gguf-"):
        from lmforge.export.gguf import export_gguf, verify_gguf
        from lmforge.export.modelfile import write_modelfile

        outtype = fmt.removeprefix("gguf-")
        path = export_gguf(out / "merged", out / fmt / "model.gguf", outtype)
        write_modelfile(path, session.tokenizer)
        result = verify_gguf(session.model, session.tokenizer, path, prompts, outtype=outtype, report_path=out / fmt / "parity.json")
        return str(path), result.to_dict()
    from lmforge.export.onnx import export_onnx, verify_onnx
    from lmforge.export.parity import load_merged

    merged, tokenizer = load_merged(out / "merged")
    folder = export_onnx(merged, tokenizer, out / "onnx")
    texts = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
    result = verify_onnx(session.model, session.tokenizer, folder, texts, report_path=out / "onnx" / "parity.json")
    return str(folder), result.to_dict()


def parity_prompts(session: Session) -> list:
    """A few held-out inputs: message lists for generative data, plain text otherwise."""
    from lmforge.data.messages import prompt_messages

    records = session.records(session.reported)[: session.config.export.parity_prompts]
    if session.plan.generative:
        return [prompt_messages(r, session.config.data) for r in records]
    from lmforge.export.parity import leading_tokens  # a document up to the length training used

    return [leading_tokens(session.tokenizer, r.get("text") or r.get("prompt") or "", session.config.data.max_length) for r in records]


def save_drift_baseline(session: Session, limit: int = 48) -> Path:
    """Statistics of the training inputs that `lmforge monitor` compares served traffic with."""
    from lmforge.data.messages import prompt_messages
    from lmforge.serve.drift import compute_baseline, save_baseline

    records = session.splits.train[:limit]
    if session.plan.generative:
        texts = [prompt_messages(r, session.config.data) for r in records]
    else:
        texts = [(r.get("text") or r.get("prompt") or "")[:2000] for r in records]
    baseline = compute_baseline(session.model, session.tokenizer, texts)
    return save_baseline(session.run_dir / "monitor" / "baseline.json", baseline)
