"""Glue: one module per command over a typed, frozen :class:`~lmforge.pipeline.session.Session`.

config -> data -> model -> methods / objectives -> train -> evaluate -> export -> serve are the stages;
this package strings them together for each command, and the CLI only parses arguments, loads the
config and calls the function named here. Heavy imports happen inside the functions, so importing
this package (and ``lmforge validate``) needs no torch.
"""

from lmforge.model.quiet import silence_library_notices
from lmforge.pipeline.compare import judge_endpoint, run_comparison
from lmforge.pipeline.configfile import load_run_config
from lmforge.pipeline.estimate import run_estimate
from lmforge.pipeline.evaluate import format_metrics, run_eval
from lmforge.pipeline.export import run_export
from lmforge.pipeline.feedback import run_feedback
from lmforge.pipeline.methods import describe_methods
from lmforge.pipeline.plan import RunPlan, plan_run
from lmforge.pipeline.prepare import run_prepare, run_preview
from lmforge.pipeline.serve import format_monitor, load_serve_config, run_monitor, run_serve
from lmforge.pipeline.session import Session, open_session, restore_session
from lmforge.pipeline.train import launch_processes, run_train
from lmforge.pipeline.ui import run_ui
from lmforge.pipeline.validate import run_validate
from lmforge.train.threads import choose_wait_policy  # torch-free; the CLI calls it before torch loads

__all__ = [
    "choose_wait_policy", "RunPlan", "Session", "describe_methods", "format_metrics", "format_monitor", "judge_endpoint", "launch_processes", "load_run_config", "load_serve_config",
    "open_session", "plan_run", "restore_session", "run_comparison", "run_estimate", "run_eval", "run_export",
    "run_feedback", "run_monitor", "run_prepare", "run_preview", "run_serve", "run_train", "run_ui", "run_validate",
    "silence_library_notices",
]
