"""Full fine-tuning: everything trains; save/load round-trips a whole model folder."""

from __future__ import annotations

from lmforge.methods import METHODS, build_method
from lmforge.model.task import TaskInfo
from tests.contracts.cases import fresh_base


def test_full_trains_every_parameter_and_saves_safetensors(tiny_llama_dir, tmp_path):
    dirs = {"causal_lm": tiny_llama_dir}
    model = fresh_base("causal_lm", dirs)
    for p in model.parameters():
        p.requires_grad_(False)
    method = build_method("full", METHODS["full"].params())
    model = method.apply(model, TaskInfo("causal_lm"))
    assert all(p.requires_grad for p in model.parameters())
    method.save(model, tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not list((tmp_path / "out").glob("*.bin"))
    assert method.merge(model) is model
