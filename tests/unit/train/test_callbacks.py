from __future__ import annotations

import json

from lmforge.config.schema import TrainConfig
from lmforge.train.callbacks import MetricsWriter
from lmforge.train.state import LoopState, plan_steps


def test_metrics_writer_drops_steps_after_the_resumed_checkpoint(tmp_path):
    plan = plan_steps(4, TrainConfig())
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "event": "train"}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "ev')
    writer = MetricsWriter(tmp_path)
    writer.on_begin(plan, LoopState(step=2))
    writer.on_log({"step": 3, "event": "train", "loss": 1.0})
    writer.on_end(LoopState(step=3))
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_fresh_run_starts_an_empty_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 5, "event": "train"}) + "\n")
    writer = MetricsWriter(tmp_path)
    writer.on_begin(plan_steps(4, TrainConfig()), LoopState())
    writer.on_end(LoopState())
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_tensorboard_writer_writes_events(tmp_path):
    from lmforge.train.callbacks import TensorBoardWriter

    writer = TensorBoardWriter(tmp_path)
    writer.on_begin(plan_steps(4, TrainConfig()), LoopState())
    writer.on_log({"step": 1, "event": "train", "loss": 2.5, "note": "text is skipped"})
    writer.on_end(LoopState(step=1))
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
