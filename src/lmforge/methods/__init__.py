"""Fine-tuning methods, one folder each. Importing this package registers them (torch-free)."""

from lmforge.methods.registry import METHODS, MethodParams, MethodSpec, build_method, get_method_spec, register_method

# One import line per method folder.
from lmforge.methods import full as _full  # noqa: F401,E402
from lmforge.methods import freeze as _freeze  # noqa: F401,E402
from lmforge.methods import lora as _lora  # noqa: F401,E402
from lmforge.methods import qlora as _qlora  # noqa: F401,E402
from lmforge.methods import adapter as _adapter  # noqa: F401,E402
from lmforge.methods import prompt_tuning as _prompt_tuning  # noqa: F401,E402
from lmforge.methods import prefix_tuning as _prefix_tuning  # noqa: F401,E402
from lmforge.methods import p_tuning as _p_tuning  # noqa: F401,E402
from lmforge.methods import ia3 as _ia3  # noqa: F401,E402

__all__ = ["METHODS", "MethodParams", "MethodSpec", "build_method", "get_method_spec", "register_method"]
