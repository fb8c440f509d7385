"""Base model + tokenizer loading: built-in names, local folders, .gguf files, hub ids."""

from lmforge.model.task import TaskInfo

__all__ = ["ResolvedModel", "TaskInfo", "load_model", "load_tokenizer", "resolve_model"]


def __getattr__(name: str):
    # Lazy: ``lmforge.model.task`` stays importable without torch (used by torch-free code).
    if name in ("load_model", "load_tokenizer"):
        from lmforge.model import load

        return getattr(load, name)
    if name in ("resolve_model", "ResolvedModel"):
        from lmforge.model import source

        return getattr(source, name)
    raise AttributeError(name)
