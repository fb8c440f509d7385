"""The run folder a training run writes into: claimed once, before anything is written.

Rules (see :mod:`lmforge.outputs`): the folder is new, empty, or a run folder lmforge wrote; it is
apart from every input of the run; one that already holds checkpoints is continued only with
``--resume``, which first removes the temporaries a killed write left in it, and continues only with the
settings the run started with (:func:`check_resume_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.atomic import remove_temporaries
from lmforge.config.inputs import input_paths, run_dir_setting
from lmforge.config.schema import RunConfig
from lmforge.errors import UserError
from lmforge.outputs import claim_output_dir


def open_run_folder(config: RunConfig, resume: bool) -> Path:
    """Create (or check) ``config.run.dir`` for training; UserError naming the conflict otherwise."""
    where = run_dir_setting(config)
    run_dir = claim_output_dir(config.run.dir, "run", inputs=input_paths(config), where=where)
    _refuse_if_running(run_dir)
    checkpoints = run_dir / "checkpoints"
    if not resume and any((checkpoints / name).exists() for name in ("last", ".last.old")):
        raise UserError("this run folder already holds checkpoints", where=str(run_dir),
                        hint="continue it with --resume, or pick another run.name / run.output_dir")
    if resume:
        remove_temporaries(run_dir)
    return run_dir


def _refuse_if_running(run_dir: Path) -> None:
    """UserError when another process is training in ``run_dir`` now (its status heartbeat is fresh and, on this
    machine, its process alive): two writers would interleave checkpoints and results."""
    import os

    from lmforge.status import read_status, run_state

    status = read_status(run_dir)
    if not status or status.get("pid") == os.getpid() or run_state(run_dir, status) != "running":
        return
    raise UserError(
        f"another process is training this run now (pid {status.get('pid')} on {status.get('host')}, "
        f"phase {status.get('phase')}, step {status.get('step', 0)})",
        where=str(run_dir),
        hint="wait for it to finish (lmforge ui shows its progress), or stop it and continue with --resume",
    )


# What may differ when a run is resumed: where and how it runs (threads, device, precision, process count: a
# checkpoint resumes on another machine), what is exported, the run's display name, and what is only reported
# after training (samples, judge, forgetting set, the base measurement). Everything else shaped the weights
# already trained (model, data, method, objective, train, the eval settings that pick the checkpoint or stop
# early, run.seed), so a change there would leave a run folder whose config.yaml does not describe it.
RESUME_MAY_CHANGE = ("runtime.", "export.", "run.name", "run.output_dir", "eval.before", "eval.generations",
                     "eval.max_new_tokens", "eval.repetition_penalty", "eval.judge", "eval.forgetting")


def check_resume_settings(resolved: RunConfig, run_dir: Path) -> None:
    """UserError naming each setting that differs from the run folder's ``config.yaml`` (the settings the run was
    trained with so far), unless it is one of :data:`RESUME_MAY_CHANGE`; nothing to check in a fresh folder."""
    import yaml

    saved_path = Path(run_dir) / "config.yaml"
    if not saved_path.is_file() or not (Path(run_dir) / "checkpoints").is_dir():
        return
    try:
        saved_raw = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        saved_raw = None
    if not isinstance(saved_raw, dict):  # not a config lmforge wrote: nothing to compare with
        return
    saved = _flat(saved_raw)
    now = _flat(resolved.model_dump(mode="json"))
    changed = [key for key in sorted(set(saved) | set(now))
               if saved.get(key) != now.get(key) and not key.startswith(RESUME_MAY_CHANGE)]
    if not changed:
        return
    lines = "\n".join(f"    {key}: {saved.get(key)!r} (the run) -> {now.get(key)!r} (now)" for key in changed[:12])
    more = f"\n    ... and {len(changed) - 12} more" if len(changed) > 12 else ""
    raise UserError(
        f"--resume continues the run with the settings it was trained with; "
        f"{len(changed)} {'setting differs' if len(changed) == 1 else 'settings differ'}:\n{lines}{more}",
        where=str(run_dir),
        hint=f"resume with the run's settings ({saved_path}; runtime, export and sample settings may change), or start "
             f"a new run; to train a finished run further, start a new run from its merged export "
             f"(model.name: {Path(run_dir) / 'export' / 'merged'})",
    )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


INPUTS_FILE = "inputs.json"  # the data files a run read at its start, with their sha256


def data_inputs(config: RunConfig) -> dict[str, dict]:
    """``{path: {"bytes", "sha256"}}`` of every local data file ``config`` reads (every task's too, and the lists
    of terms data.prepare redacts), in order."""
    from lmforge.config.inputs import data_sources, terms_files
    from lmforge.data.prepare.audit import sha256_file
    from lmforge.data.sources import local_files

    files = [path for raw, data_format in data_sources(config) for path in local_files(raw, data_format == "text")]
    files += [path for path in map(Path, terms_files(config)) if path.expanduser().is_file()]
    out: dict[str, dict] = {}
    for path in files:
        if str(path) not in out:
            path_here = path.expanduser()
            out[str(path)] = {"bytes": path_here.stat().st_size, "sha256": sha256_file(path_here)}
    return out


def record_inputs(config: RunConfig, run_dir: Path) -> None:
    """Write ``inputs.json`` (what :func:`check_resume_inputs` compares a resume with), unless a resumed run
    already has one."""
    import json

    from lmforge.atomic import atomic_write_text

    path = Path(run_dir) / INPUTS_FILE
    if not path.is_file():
        atomic_write_text(path, json.dumps(data_inputs(config), indent=1, sort_keys=True) + "\n")


def check_resume_inputs(config: RunConfig, run_dir: Path) -> None:
    """UserError naming each data file that changed, appeared or went away since the run started: a resume on
    other data trains on another split and order (held-out examples may move into training)."""
    import json

    path = Path(run_dir) / INPUTS_FILE
    if not path.is_file():  # a run folder from before inputs were recorded: nothing to compare with
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return
    now = data_inputs(config)
    changed = [f"{p}: changed" for p in recorded if p in now and now[p]["sha256"] != recorded[p].get("sha256")]
    changed += [f"{p}: gone" for p in recorded if p not in now] + [f"{p}: new" for p in now if p not in recorded]
    if changed:
        more = f"\n    ... and {len(changed) - 12} more" if len(changed) > 12 else ""
        raise UserError(
            "--resume continues the run on the data it started with; since then:\n"
            + "\n".join(f"    {line}" for line in changed[:12]) + more,
            where=str(run_dir),
            hint=f"put the data back as it was ({path} lists each file's sha256), or start a new run on the new data",
        )
