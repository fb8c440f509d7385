from __future__ import annotations

from lmforge.config.schema import TrainConfig
from lmforge.train.state import LoopState, epoch_order, improved, next_window, plan_steps


def test_plan_counts_steps_from_epochs_or_max_steps():
    plan = plan_steps(10, TrainConfig(batch_size=3, grad_accum=2, epochs=1.5))
    assert (plan.micro_per_epoch, plan.steps_per_epoch, plan.total_steps) == (4, 2, 3)
    assert plan.eval_every == 2 and plan.save_every == 2
    plan = plan_steps(10, TrainConfig(batch_size=3, max_steps=7, eval_every=5))
    assert plan.total_steps == 7 and plan.eval_every == 5 and plan.save_every == 5


def test_epoch_order_is_a_deterministic_permutation_per_epoch():
    assert sorted(epoch_order(20, 1, 0)) == list(range(20))
    assert epoch_order(20, 1, 0) == epoch_order(20, 1, 0)
    assert epoch_order(20, 1, 0) != epoch_order(20, 1, 1) != epoch_order(20, 2, 0)


def test_windows_cover_each_epoch_once_and_stop_at_its_end():
    plan = plan_steps(10, TrainConfig(batch_size=3, grad_accum=3))
    state = LoopState()
    first, second = next_window(plan, state, 3, 3, seed=0), next_window(plan, state, 3, 3, seed=0)
    assert [len(b) for b in first] == [3, 3, 3] and [len(b) for b in second] == [1]
    assert sorted(i for b in first + second for i in b) == list(range(10))
    assert (state.epoch, state.position) == (0, 4)
    next_window(plan, state, 3, 3, seed=0)
    assert (state.epoch, state.position) == (1, 3)


def test_improved_respects_mode_and_min_delta():
    assert improved(1.0, None, "min")
    assert improved(0.5, 1.0, "min") and not improved(0.95, 1.0, "min", min_delta=0.1)
    assert improved(2.0, 1.0, "max") and not improved(1.0, 1.0, "max")
