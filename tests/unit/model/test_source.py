"""Model source resolution: built-in names, local folders, .gguf caching, unknown names."""

from __future__ import annotations

import os

import pytest

from lmforge.config.schema import ModelConfig
from lmforge.errors import UserError
from lmforge.model import source
from lmforge.model.source import MARKER, converted_gguf, gguf_cache_dir, resolve_model


def test_minilm_builtin_resolves_to_its_package_folder():
    resolved = resolve_model(ModelConfig(name="minilm-l6"))
    assert resolved.builtin == "minilm-l6"
    assert resolved.gguf_file is None
    assert (resolved.path / "config.json").is_file()


def test_local_folder_resolves_to_itself(tiny_llama_dir):
    resolved = resolve_model(ModelConfig(name=str(tiny_llama_dir)))
    assert resolved.path == tiny_llama_dir.resolve()
    assert resolved.builtin is None and resolved.gguf_file is None


def test_folder_without_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        resolve_model(ModelConfig(name=str(tmp_path)))


def test_missing_local_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(ModelConfig(name=str(tmp_path / "nope")))


@pytest.mark.parametrize(("name", "suggestion"), [("smolm2-135m-instruct", "smollm2-135m-instruct"),
                                                  ("smollm2", "smollm2-135m-instruct"),
                                                  ("minilm", "minilm-l6")])
def test_unknown_name_offline_says_so_with_did_you_mean(name, suggestion):
    with pytest.raises(UserError) as info:
        resolve_model(ModelConfig(name=name))
    text = str(info.value)
    assert f"model '{name}' is not a built-in name, a local folder or a .gguf file" in text
    assert "hub" in text
    assert f"did you mean '{suggestion}'" in text
    assert info.value.where == "model.name"


def test_missing_asset_package_hints_make_install():
    with pytest.raises(UserError) as info:
        source._asset_location("lmforge_no_such_asset_package")
    assert info.value.hint == "run make install"


def test_gguf_cache_key_follows_name_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "my model.gguf"
    gguf.write_bytes(b"x" * 10)
    first = gguf_cache_dir(gguf)
    assert first.parent == tmp_path / "cache" / "models" / "gguf"
    assert first.name.startswith("my_model-10-")
    os.utime(gguf, (1_000_000, 1_000_000))
    assert gguf_cache_dir(gguf) != first
    gguf.write_bytes(b"x" * 11)
    os.utime(gguf, (1_000_000, 1_000_000))
    assert "-11-1000000" in gguf_cache_dir(gguf).name


def test_gguf_conversion_runs_once_and_is_atomic(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"gguf")
    out = tmp_path / "cache" / "m"
    calls = []

    def failing(src, dst):
        (dst / "config.json").write_text("{}")
        raise RuntimeError("killed mid-way")

    with pytest.raises(UserError, match="could not convert"):
        converted_gguf(gguf, out, convert=failing)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".m")]

    def working(src, dst):
        calls.append(src)
        (dst / "config.json").write_text("{}")

    assert converted_gguf(gguf, out, convert=working) == out
    assert converted_gguf(gguf, out, convert=working) == out
    assert len(calls) == 1
    assert (out / MARKER).is_file() and (out / "config.json").is_file()


def test_corrupt_gguf_file_is_a_user_error_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a gguf file at all")
    with pytest.raises(UserError, match="could not convert GGUF file"):
        resolve_model(ModelConfig(name=str(gguf)))
    cache = tmp_path / "cache" / "models" / "gguf"
    assert not cache.exists() or not any(p for p in cache.iterdir() if not p.name.startswith("."))


def test_non_gguf_file_is_a_user_error(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"")
    with pytest.raises(UserError, match="not a .gguf file"):
        resolve_model(ModelConfig(name=str(path)))
