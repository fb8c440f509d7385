"""The run folder's config.yaml is the config with every open choice filled in, and planning it again
gives the same run: same method and objective, same parameters (defaults included)."""

from __future__ import annotations

import pytest
import yaml

from lmforge.config import parse_config
from lmforge.methods.registry import METHODS
from lmforge.objectives.registry import OBJECTIVES
from lmforge.pipeline.plan import plan_run

FORMAT_OF = {"classification": "classification", "reward": "preference", "dpo": "preference", "simpo": "preference",
             "orpo": "preference", "kto": "preference", "grpo": "instruction", "causal_lm": "instruction"}


def _cases():
    for method in sorted(METHODS):
        yield method, None  # the data format's default objective
    for objective in sorted(OBJECTIVES):
        yield "lora", objective


def _raw(method: str, objective: str | None) -> dict:
    fmt = FORMAT_OF.get(objective or "causal_lm", "instruction")
    raw = {"model": {"name": "tiny"}, "data": {"format": fmt, "train": "data.jsonl"}, "method": {"name": method}}
    if objective is not None:
        raw["objective"] = {"name": objective}
    if objective == "grpo":
        raw["objective"]["reward"] = "rewards.py:length"  # planning checks the form, not the file
    return raw


@pytest.mark.parametrize(("method", "objective"), list(_cases()))
def test_saved_config_fills_every_default_and_plans_the_same_run(method, objective):
    if objective in OBJECTIVES and objective not in FORMAT_OF:
        pytest.fail(f"objective {objective!r} has no data format in this test: add it to FORMAT_OF")
    plan = plan_run(parse_config(_raw(method, objective)))
    resolved = plan.resolved_config()
    assert resolved.objective is not None and resolved.objective.name == plan.objective.name
    assert set(resolved.method.params) == set(type(plan.method_params).model_fields)
    assert set(resolved.objective.params) == set(type(plan.objective_params).model_fields)

    text = yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False)  # what save_resolved writes
    again = plan_run(parse_config(yaml.safe_load(text)))
    assert (again.method.name, again.objective.name) == (plan.method.name, plan.objective.name)
    assert again.method_params == plan.method_params
    assert again.objective_params == plan.objective_params
    assert again.resolved_config() == resolved  # resolving is idempotent
