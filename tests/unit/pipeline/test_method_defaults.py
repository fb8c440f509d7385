"""train.lr left unset resolves to the method's own default in the plan; set, it stays the user's value.

The resolved value is what the run folder's config.yaml records and what the training loop uses.
"""

from __future__ import annotations

import pytest
import yaml

from lmforge.config import RunConfig, save_resolved
from lmforge.methods import METHODS
from lmforge.pipeline.plan import plan_run


def _config(method: str, **train) -> RunConfig:
    return RunConfig.model_validate({"model": {"name": "x"}, "data": {"format": "instruction", "train": "a.jsonl"},
                                     "method": {"name": method, **({"last_layers": 1} if method == "freeze" else {})},
                                     "train": train})


def test_every_method_declares_a_positive_default_lr_and_they_differ():
    lrs = {name: spec.default_lr for name, spec in METHODS.items()}
    assert all(isinstance(v, float) and 0 < v < 1 for v in lrs.values()), lrs
    assert len(set(lrs.values())) > 1  # not one global rate under another name
    assert METHODS["prompt_tuning"].default_lr > METHODS["lora"].default_lr > METHODS["full"].default_lr


@pytest.mark.parametrize("method", sorted(METHODS))
def test_unset_lr_resolves_to_the_methods_default(method):
    config = _config(method)
    assert config.train.lr is None
    plan = plan_run(config)
    assert plan.config.train.lr == METHODS[method].default_lr
    assert config.train.lr is None  # the user's config object is never mutated
    assert plan.config.train.model_dump(exclude={"lr"}) == config.train.model_dump(exclude={"lr"})
    assert plan.config.model_dump(exclude={"train"}) == config.model_dump(exclude={"train"})


@pytest.mark.parametrize("method", ["prompt_tuning", "full"])
def test_a_set_lr_is_kept(method):
    plan = plan_run(_config(method, lr=7e-4))
    assert plan.config.train.lr == 7e-4


def test_the_resolved_config_records_the_lr_used_and_reloads_to_the_same_plan(tmp_path):
    from lmforge.config import load_config

    plan = plan_run(_config("ia3"))
    save_resolved(plan.config, tmp_path)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["train"]["lr"] == METHODS["ia3"].default_lr
    reloaded = load_config(tmp_path / "config.yaml")
    assert reloaded.train.lr == METHODS["ia3"].default_lr and plan_run(reloaded).config == plan.config


def test_lr_must_be_positive_when_set():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="lr"):
        _config("lora", lr=0)


def test_lmforge_methods_prints_each_default_lr():
    from lmforge.pipeline.methods import describe_methods

    lines = describe_methods().splitlines()
    for name, spec in METHODS.items():
        at = lines.index(name)  # each method's block starts with its name alone on a line
        assert f"  lr:       {spec.default_lr:g} (default when train.lr is not set)" in lines[at + 1:at + 4]
