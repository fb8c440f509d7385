from lmforge.methods.registry import MethodParams


class FullParams(MethodParams):
    """Full fine-tuning has no parameters of its own."""
