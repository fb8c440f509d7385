"""Atomic writes (lmforge.atomic): whole or nothing, ordinary permissions, leftovers recognised."""

from __future__ import annotations

import os
import stat

import pytest

from lmforge.atomic import atomic_dir, atomic_write_text, publish_dir, remove_temporaries


def test_files_and_folders_get_the_modes_open_and_mkdir_would_give(tmp_path):
    mask = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750


def test_a_failed_folder_write_keeps_the_previous_folder(tmp_path):
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "v").write_text("2")
            raise RuntimeError("killed")
    assert (tmp_path / "out" / "v").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_publish_dir_replaces_a_folder_whole(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("old")
    (tmp_path / "staged").mkdir()
    (tmp_path / "staged" / "new").write_text("new")
    publish_dir(tmp_path / "staged", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new"]


def test_only_lmforge_temporaries_are_removed(tmp_path):
    for name in (".last.ab12cd_9.tmp", ".config.yaml.0123abcd.tmp"):
        (tmp_path / name).mkdir() if name.startswith(".last") else (tmp_path / name).write_text("x")
    for name in ("notes.tmp", ".hidden", "last", ".x.short.tmp"):
        (tmp_path / name).write_text("keep")
    removed = remove_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".config.yaml.0123abcd.tmp", ".last.ab12cd_9.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", ".x.short.tmp", "last", "notes.tmp"]
    assert remove_temporaries(tmp_path / "missing") == []
