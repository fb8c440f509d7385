"""data.tasks (multi-task runs): what users write, what fails, and with which field path."""

import pytest
import yaml

from lmforge.config import load_config, save_resolved
from lmforge.errors import UserError
from lmforge.pipeline.multitask import task_sections
from lmforge.pipeline.plan import plan_run

CLS = """model: {name: minilm-l6}
data:
  format: classification
  mixing: temperature
  tasks:
    - {name: sentiment, train: a.csv, columns: {text: review, label: score}, weight: 2}
    - {name: topic, train: {path: b.csv, limit: 10}, test: c.csv, labels: [x, y]}
"""

LM = """model: {name: smollm2-135m-instruct}
data:
  format: instruction
  system_prompt: Be brief.
  columns: {instruction: question, output: answer}
  tasks:
    - {name: finance, train: a.jsonl}
    - {name: chat, format: chat, train: b.jsonl, columns: {}, system_prompt: null}
    - {name: general, train: c.jsonl, system_prompt: Answer in one word.}
"""


def load(tmp_path, text, overrides=()):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return load_config(path, list(overrides))


def error(tmp_path, text, overrides=()) -> str:
    with pytest.raises(UserError) as exc:
        plan_run(load(tmp_path, text, overrides))
    return str(exc.value)


def test_classification_tasks_inherit_and_override(tmp_path):
    cfg = load(tmp_path, CLS)
    sentiment, topic = task_sections(cfg.data)
    assert cfg.data.mixing == "temperature" and cfg.data.temperature == 2.0
    assert [t.weight for t in cfg.data.tasks] == [2.0, 1.0]
    assert sentiment.format == topic.format == "classification"
    assert sentiment.columns == {"text": "review", "label": "score"} and topic.columns == {}
    assert topic.train.path == "b.csv" and topic.train.limit == 10 and topic.test.path == "c.csv"
    assert sentiment.test is None and topic.labels == ["x", "y"] and sentiment.labels is None
    assert cfg.data.train is None and cfg.objective_name is None
    assert plan_run(cfg).objective.name == "classification"


def test_lm_tasks_mix_instruction_and_chat(tmp_path):
    cfg = load(tmp_path, LM)
    finance, chat, general = task_sections(cfg.data)
    assert (finance.format, chat.format, general.format) == ("instruction", "chat", "instruction")
    assert finance.system_prompt == "Be brief." and general.system_prompt == "Answer in one word."
    assert finance.columns == {"instruction": "question", "output": "answer"} and chat.columns == {}
    assert plan_run(cfg).objective.name == "causal_lm"


def test_format_defaults_to_the_first_tasks(tmp_path):
    cfg = load(tmp_path, "model: {name: m}\ndata:\n  tasks:\n    - {name: a, format: chat, train: a.jsonl}\n")
    assert cfg.data.format == "chat"


def test_resolved_config_loads_back_to_the_same_tasks(tmp_path):
    cfg = load(tmp_path, LM)
    save_resolved(cfg, tmp_path)
    again = load_config(tmp_path / "config.yaml")
    assert task_sections(again.data) == task_sections(cfg.data)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["data"]["tasks"][1]["name"] == "chat"


@pytest.mark.parametrize("text, expected", [
    (CLS.replace("format: classification\n", "format: classification\n  train: x.csv\n"),
     "data.train: not used with data.tasks"),
    (CLS.replace("name: topic", "name: sentiment"), "data.tasks.1.name: task name 'sentiment' is used twice"),
    (CLS.replace("name: topic", "name: 'two words'"), "data.tasks.1.name: String should match pattern"),
    (CLS.replace("weight: 2", "weight: 0"), "data.tasks.0.weight: Input should be greater than 0"),
    (CLS.replace("labels: [x, y]", "format: instruction"), "data.tasks.1.format: 'instruction' cannot be mixed"),
    (LM.replace("format: chat", "format: text"), "data.tasks.1.format: 'text' cannot be mixed"),
    (CLS.replace("label: score", "lable: score"), "data.tasks.0.columns.lable: not a field of format 'classification'"),
    (LM.replace("system_prompt: Answer in one word.", "labels: [a, b]"), "data.tasks.2.labels: labels are only used"),
    (CLS.replace("mixing: temperature", "mixing: shuffle"), "data.mixing"),
    (CLS.replace("weight: 2", "wieght: 2"), "data.tasks.0.wieght: unknown key; did you mean 'weight'?"),
    ("model: {name: m}\ndata: {format: classification, tasks: []}\n", "data.tasks: give at least one task"),
    ("model: {name: m}\ndata: {format: classification}\n", "data.train: required field is missing (or give data.tasks)"),
])
def test_bad_task_configs_name_the_field(tmp_path, text, expected):
    assert expected in error(tmp_path, text)


def test_plan_rules_for_multi_task_classification(tmp_path):
    assert "objective.label_smoothing" in error(tmp_path, CLS + "objective: {name: classification, label_smoothing: 0.1}\n")
    assert "export" in error(tmp_path, CLS + "export: {merged: true}\n")
    assert "does not train on" in error(tmp_path, LM + "objective: {name: reward}\n")


def test_validation_stays_torch_free():
    import subprocess
    import sys

    code = ("import sys; from lmforge.config.schema import RunConfig; from lmforge.pipeline.plan import plan_run; "
            "c = RunConfig.model_validate({'model': {'name': 'm'}, 'data': {'format': 'classification', 'tasks': "
            "[{'name': 'a', 'train': 'a.csv'}, {'name': 'b', 'train': 'b.csv'}]}}); plan_run(c); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
