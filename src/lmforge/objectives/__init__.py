"""Objectives (losses over example formats). Importing this package registers them (torch-free)."""

from lmforge.objectives.registry import OBJECTIVES, ObjectiveParams, ObjectiveSpec, build_objective, get_objective_spec, register_objective

from lmforge.objectives import causal_lm as _causal_lm  # noqa: F401,E402
from lmforge.objectives import classification as _classification  # noqa: F401,E402
from lmforge.objectives import dpo as _dpo  # noqa: F401,E402
from lmforge.objectives import reward as _reward  # noqa: F401,E402
from lmforge.objectives import kto as _kto  # noqa: F401,E402
from lmforge.objectives import grpo as _grpo  # noqa: F401,E402

__all__ = ["OBJECTIVES", "ObjectiveParams", "ObjectiveSpec", "build_objective", "get_objective_spec", "register_objective"]
