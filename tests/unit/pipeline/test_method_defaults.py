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
    assert config.train.epochs is None and plan.config.train.epochs == 1.0  # instruction data: one pass
    assert plan.config.train.model_dump(exclude={"lr", "epochs"}) == config.train.model_dump(exclude={"lr", "epochs"})
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
        assert f"  lr:       {spec.default_lrs()} (default when train.lr is not set)" in lines[at + 1:at + 4]


def test_a_classification_run_gets_the_methods_classification_lr():
    """LoRA's measured default is lower on a classification head (1e-3 collapsed MiniLM sentiment to the
    majority class, 5e-4 did not); an explicit train.lr still wins, and the causal default is untouched."""
    spec = METHODS["lora"]
    assert spec.classification_lr is not None and spec.classification_lr < spec.default_lr
    config = RunConfig.model_validate({"model": {"name": "x"}, "data": {"format": "classification", "train": "a.jsonl"},
                                       "method": {"name": "lora"}})
    assert plan_run(config).config.train.lr == spec.classification_lr
    assert plan_run(_config("lora")).config.train.lr == spec.default_lr
    given = RunConfig.model_validate({**config.model_dump(exclude_unset=True), "train": {"lr": 2e-3}})
    assert plan_run(given).config.train.lr == 2e-3
    assert spec.default_lrs() == f"{spec.default_lr:g} (classification {spec.classification_lr:g})"
    assert METHODS["full"].lr_for("sequence_classification") == METHODS["full"].default_lr


@pytest.mark.parametrize("method", ["prefix_tuning", "p_tuning"])
def test_prompt_methods_default_to_more_epochs_on_classification(method):
    """Measured (docs/methods.md): prefix and P-tuning stayed at the majority class on the sentiment set after
    2.5 epochs and learn after 6; so on a classification head their unset epochs resolve to 6, elsewhere to 1,
    and a value the user sets always wins."""
    spec = METHODS[method]
    classify = {"model": {"name": "x"}, "data": {"format": "classification", "train": "a.jsonl"}, "method": {"name": method}}
    assert plan_run(RunConfig.model_validate(classify)).config.train.epochs == spec.classification_epochs == 6
    assert plan_run(_config(method)).config.train.epochs == 1.0
    assert plan_run(RunConfig.model_validate({**classify, "train": {"epochs": 2}})).config.train.epochs == 2
    assert plan_run(RunConfig.model_validate({**classify, "train": {"max_steps": 5}})).config.train.max_steps == 5
    assert METHODS["lora"].epochs_for("sequence_classification") == 1.0
