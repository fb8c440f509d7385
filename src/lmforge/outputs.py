"""Output folders: where a command may write, and the marker that says lmforge wrote a folder. Torch-free.

The rules every command that writes follows (``lmforge train``, ``data prepare``, ``eval``,
``export``, ``feedback``, ``compare``):

- an output folder never is, contains, or lies inside one of the command's inputs (data files,
  data folders, a local model folder): lmforge never overwrites, deletes or adds files beside
  what the user gave it;
- an output folder is new, empty, or was written by lmforge for the same purpose: it carries
  the marker file ``.lmforge`` (JSON ``{"kind": KIND, "lmforge": VERSION}``), KIND one of
  :data:`KINDS`. A folder a user made and filled is refused, never written into;
- run folders written before the marker existed (a ``config.yaml`` next to checkpoints or
  results) and the usual sub-folders of a marked run folder (``data``, ``eval``, ``export``) are
  recognised and marked on first use, so they keep working with ``--resume``.

Every refusal is a :class:`~lmforge.errors.UserError` (exit 2) naming the folder and the
conflict. Folders are created with their marker; a caller that publishes a folder in one rename
(:func:`lmforge.atomic.atomic_dir`) checks first with ``create=False`` and writes the marker
into the staged folder with :func:`write_marker`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from lmforge.atomic import atomic_write_text, remove_temporaries
from lmforge.errors import UserError

MARKER = ".lmforge"
KINDS = ("run", "data", "eval", "export", "feedback")

# Sub-folders a run folder holds, by the kind they are written as (legacy adoption, see module doc).
RUN_SUBFOLDERS = {"data": "data", "eval": "eval", "eval-base": "eval", "export": "export"}
# Files lmforge leaves in a folder of each kind (legacy adoption of folders written before the marker).
LEGACY_SIGNS = {
    "run": ("config.yaml",),
    "data": ("manifest.json", "train.jsonl"),
    "eval": ("results.json", "report.md"),
    "export": ("README.md",),
    "feedback": ("judgements.jsonl",),
}


def claim_output_dir(folder: str | os.PathLike, kind: str, *, inputs: Iterable[str | os.PathLike] = (),
                     where: str, create: bool = True) -> Path:
    """Check that ``folder`` may receive a ``kind`` output; create it (with its marker) when ``create``.

    ``inputs``: the command's local inputs (files or folders; paths that do not exist are
    ignored). ``where``: the setting or option that chose the folder (named in errors, e.g.
    ``run.output_dir`` or ``--out``). Raises UserError when the folder is a file, is / contains /
    lies inside an input, or is not empty and not written by lmforge as a ``kind`` folder.
    Returns the folder as a Path.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"'{path}' is a file, not a folder", where=where,
                        hint="point it at a new or empty folder (lmforge creates it)")
    check_inputs(path, inputs, where)
    if path.is_dir() and not marked_as(path, kind, where):
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            raise UserError(
                f"'{path}' is not empty ({shown}) and was not written by lmforge",
                where=where,
                hint="choose a new or empty folder; lmforge never writes into a folder it did not create",
            )
    if create:
        path.mkdir(parents=True, exist_ok=True)
        if not (path / MARKER).is_file():
            write_marker(path, kind)
    return path


def check_inputs(folder: Path, inputs: Iterable[str | os.PathLike], where: str) -> None:
    """UserError when ``folder`` is an input, contains one, or lies inside an input folder."""
    out = folder.resolve()
    for raw in inputs:
        given = Path(raw).expanduser()
        if not given.exists():
            continue
        source = given.resolve()
        if out == source:
            conflict = "is the input"
        elif out in source.parents:
            conflict = "contains the input"
        elif source.is_dir() and source in out.parents:
            conflict = "lies inside the input folder"
        else:
            continue
        raise UserError(f"the output folder '{folder}' {conflict} '{given}'", where=where,
                        hint="choose an output folder apart from your data and models; lmforge never writes "
                             "beside its inputs")


def marked_as(path: Path, kind: str, where: str = "") -> bool:
    """Whether ``path`` (an existing folder) was written by lmforge as a ``kind`` folder.

    True for a ``.lmforge`` marker of that kind, a legacy folder of that kind (see module doc;
    it is marked now), or an empty folder. UserError when the marker names another kind.
    """
    marker = path / MARKER
    if marker.is_file():
        found = read_marker(path)
        if found != kind:
            raise UserError(f"'{path}' holds lmforge {found or 'unknown'} output, not {kind} output",
                            where=where or str(path), hint=f"choose a separate folder for the {kind} output")
        return True
    if not any(path.iterdir()):
        return True
    if _legacy(path, kind):
        write_marker(path, kind)
        return True
    return False


def _legacy(path: Path, kind: str) -> bool:
    """A folder lmforge wrote before markers existed: inside a marked run folder, or with its usual files."""
    parent = path.parent
    if RUN_SUBFOLDERS.get(path.name) == kind and (parent / MARKER).is_file() and read_marker(parent) == "run":
        return True
    if not all((path / name).exists() for name in LEGACY_SIGNS[kind]):
        return False
    if kind == "run":  # a config.yaml alone may be the user's own: a run also left training outputs
        return any((path / name).exists() for name in ("checkpoints", "metrics.jsonl", "before.json", "results.json"))
    return True


def read_marker(path: Path) -> str | None:
    """The kind written in ``path/.lmforge`` (None when unreadable)."""
    try:
        return json.loads((Path(path) / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def write_marker(path: str | os.PathLike, kind: str) -> Path:
    """Write ``path/.lmforge`` saying lmforge wrote this ``kind`` folder."""
    from lmforge import __version__

    return atomic_write_text(Path(path) / MARKER, json.dumps({"kind": kind, "lmforge": __version__}) + "\n")


def check_name(name: str, where: str) -> str:
    """``name`` when it is a plain name (one path component); ValueError naming the problem otherwise.

    A name is used as a folder name under a folder the user chose (``runs/<run.name>``), so it may
    not hold a path separator, be ``.`` / ``..``, start with a dot or ``~``, or be empty.
    """
    problem = None
    if not name or not name.strip():
        problem = "is empty"
    elif "/" in name or "\\" in name:
        problem = "holds a path separator"
    elif name in (".", ".."):
        problem = "is not a name"
    elif name.startswith((".", "~")):
        problem = f"starts with '{name[0]}'"
    elif any(ord(c) < 32 for c in name):
        problem = "holds a control character"
    if problem:
        raise ValueError(f"{where} '{name}' {problem}: it must be a plain name (letters, digits, - _ .); "
                         "choose the folder itself with run.output_dir")
    return name


def claim_run_subfolder(run_dir: str | os.PathLike, name: str, kind: str, *, inputs: Iterable[str | os.PathLike] = (),
                        where: str, create: bool = True) -> Path:
    """``<run_dir>/<name>`` as a ``kind`` output folder; the run folder itself is claimed (created and
    marked as a run folder) first. Same rules and errors as :func:`claim_output_dir`."""
    inputs = list(inputs)
    run = claim_output_dir(run_dir, "run", inputs=inputs, where=where)
    remove_temporaries(run, name)  # what a killed earlier write of this folder left (a run folder is lmforge's)
    if (run / f".{name}.old").is_dir():  # the previous folder, moved aside by a write killed mid-swap
        shutil.rmtree(run / f".{name}.old", ignore_errors=True)
    return claim_output_dir(run / name, kind, inputs=inputs, where=where, create=create)


def eval_output_dir(config, out_dir: str | os.PathLike | None, run_dir: str | os.PathLike, name: str) -> Path:
    """The report folder of ``lmforge eval`` (checked, not created): ``--out``, else ``<run_dir>/<name>``.

    ``config``: the evaluated run's config (its inputs must stay apart from the folder).
    """
    from lmforge.config.inputs import input_paths

    inputs = input_paths(config)
    if out_dir:
        return claim_output_dir(out_dir, "eval", inputs=inputs, where="--out", create=False)
    return claim_run_subfolder(run_dir, name, "eval", inputs=inputs, where=str(run_dir), create=False)


def export_output_dir(config, run_dir: str | os.PathLike) -> Path:
    """The export folder (checked, not created): ``export.dir``, else ``<run_dir>/export``."""
    from lmforge.config.inputs import input_paths

    inputs = input_paths(config)
    if config.export.dir:
        return claim_output_dir(config.export.dir, "export", inputs=inputs, where="export.dir", create=False)
    return claim_run_subfolder(run_dir, "export", "export", inputs=inputs, where=str(run_dir), create=False)


def prepare_output_dir(config, out_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The folder ``data prepare`` publishes into (checked, not created): ``--out``, else ``<run dir>/data``;
    and the setting that chose it (for the final check once every input file is known)."""
    from lmforge.config.inputs import input_paths, run_dir_setting

    inputs = input_paths(config)
    if out_dir:
        return claim_output_dir(out_dir, "data", inputs=inputs, where="--out", create=False), "--out"
    where = run_dir_setting(config)
    return claim_run_subfolder(config.run.dir, "data", "data", inputs=inputs, where=where, create=False), where
