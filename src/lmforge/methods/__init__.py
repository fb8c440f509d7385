"""Fine-tuning methods, one folder each. Importing this package registers them (torch-free)."""

from lmforge.methods.registry import METHODS, MethodParams, MethodSpec, build_method, get_method_spec, register_method

# One import line per method folder.
from lmforge.methods import full as _full  # noqa: F401,E402
from lmforge.methods import freeze as _freeze  # noqa: F401,E402
from lmforge.methods import lora as _lora  # noqa: F401,E402

__all__ = ["METHODS", "MethodParams", "MethodSpec", "build_method", "get_method_spec", "register_method"]
