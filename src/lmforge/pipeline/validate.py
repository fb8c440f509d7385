"""`lmforge validate`: every config and cross-axis check, without importing torch."""

from __future__ import annotations

from lmforge.config import RunConfig
from lmforge.pipeline.plan import plan_run


def run_validate(config: RunConfig, *, source: str = "<config>") -> str:
    """The one-line summary of a valid config; UserError on the first problem."""
    plan = plan_run(config, source=source)
    tasks = f" x {len(config.data.tasks)} tasks, mixing {config.data.mixing}" if config.data.tasks else ""
    return (f"{source}: ok  (model {config.model.name}, data {config.data.format}{tasks}, "
            f"method {plan.method.name}, objective {plan.objective.name})")
