"""Names and paths that come from requests: checked before any file is touched.

A run is named by one path segment (letters, digits, ``. _ -``; no leading dot); the folder it
names is resolved (symlinks followed) and must stay inside the root it was looked up in.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.exceptions import HTTPException

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def valid_name(name: str) -> bool:
    """Whether ``name`` is one safe path segment (no separators, no ``..``, no leading dot)."""
    return bool(NAME.fullmatch(name or "")) and ".." not in name


def inside(root: Path, name: str, *, status: int = 404) -> Path:
    """``root / name`` resolved; HTTP ``status`` when ``name`` is not one safe segment or the
    resolved path leaves ``root`` (a symlink pointing out, say)."""
    if not valid_name(name):
        raise HTTPException(status, f"no such run: {name[:80]!r}")
    path = (root / name).resolve()
    if path.parent != root.resolve():
        raise HTTPException(status, f"no such run: {name[:80]!r}")
    return path


def config_file(folder: Path) -> Path:
    """A run folder's config: config.yaml (written when training starts), else the launch.yaml of a
    run the dashboard launched that has not started yet."""
    saved = folder / "config.yaml"
    return saved if saved.is_file() or not (folder / "launch.yaml").is_file() else folder / "launch.yaml"


def run_folder(runs_dir: Path, name: str) -> Path:
    """The run folder ``name`` inside ``runs_dir`` (it must hold a config); 404 otherwise."""
    path = inside(runs_dir, name)
    if not config_file(path).is_file():
        raise HTTPException(404, f"no such run: {name[:80]!r}")
    return path
