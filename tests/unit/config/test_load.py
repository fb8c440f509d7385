import pytest

from lmforge.config import load_config, parse_config
from lmforge.errors import UserError
from lmforge.pipeline.plan import plan_run

BASE = "model: {name: smollm2-135m-instruct}\ndata: {format: instruction, train: data.jsonl}\n"


def write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_defaults_fill_in(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.method.name == "lora"
    assert cfg.objective_name is None and plan_run(cfg).objective.name == "causal_lm"  # the format's default
    assert cfg.data.train.path == "data.jsonl"
    assert cfg.train.lr == pytest.approx(2e-4)


def test_unknown_key_did_you_mean(tmp_path):
    with pytest.raises(UserError) as exc:
        load_config(write(tmp_path, BASE + "train: {batchsize: 4}\n"))
    assert "train.batchsize: unknown key; did you mean 'batch_size'?" in str(exc.value)


def test_wrong_type_names_field(tmp_path):
    with pytest.raises(UserError) as exc:
        load_config(write(tmp_path, BASE + "train: {epochs: many}\n"))
    assert "train.epochs" in str(exc.value)


def test_overrides_and_yaml_scientific_notation(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.lr=1e-4", "data.max_length=64", "method.name=full"])
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.data.max_length == 64
    assert cfg.method.name == "full"


def test_bad_override_form(tmp_path):
    with pytest.raises(UserError, match="section.key=value"):
        load_config(write(tmp_path, BASE), ["train.lr"])


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(UserError) as exc:
        load_config(write(tmp_path, BASE + "train: {lr: [1,\n"))
    assert "run.yaml:" in str(exc.value)


def test_config_is_frozen():
    cfg = parse_config({"model": {"name": "x"}, "data": {"format": "text", "train": "a.txt"}})
    with pytest.raises(Exception):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_column_not_in_format():
    with pytest.raises(UserError, match="columns.instrution"):
        plan_run(parse_config({"model": {"name": "x"}, "data": {"format": "instruction", "train": "a",
                                                                 "columns": {"instrution": "q"}}}))
