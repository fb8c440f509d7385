import pytest

from lmforge.config import load_config, parse_config
from lmforge.errors import UserError
from lmforge.methods import METHODS
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
    assert cfg.train.lr is None and plan_run(cfg).config.train.lr == METHODS["lora"].default_lr  # lora's own


def test_a_config_without_a_run_name_is_named_after_its_file(tmp_path):
    sentiment = tmp_path / "sentiment.yaml"
    sentiment.write_text(BASE)
    assert load_config(sentiment).run.dir == "runs/sentiment"
    assert load_config(sentiment, ["run.name=other"]).run.dir == "runs/other"  # a name given wins
    assert load_config(sentiment, ["run.output_dir=/tmp/x"]).run.name == "run"  # so does a folder
    named = tmp_path / "named.yaml"
    named.write_text(BASE + "run: {name: support-bot, seed: 3}\n")
    assert load_config(named).run.dir == "runs/support-bot"
    seeded = tmp_path / "seeded.yaml"
    seeded.write_text(BASE + "run: {seed: 3}\n")
    assert load_config(seeded).run.name == "seeded" and load_config(seeded).run.seed == 3
    hidden = tmp_path / ".hidden.yaml"
    hidden.write_text(BASE)
    assert load_config(hidden).run.name == "run"  # not a plain name: the schema's default
    assert parse_config({"model": {"name": "m"}, "data": {"format": "text", "train": "t"}}).run.name == "run"
    from lmforge.pipeline.validate import validate_config

    assert validate_config(sentiment).config.run.name == "sentiment"  # validate reads the same name


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


def _error(tmp_path, text, overrides=()) -> str:
    with pytest.raises(UserError) as exc:
        load_config(write(tmp_path, text), list(overrides))
    return str(exc.value)


@pytest.mark.parametrize("text, line, key", [
    (BASE + "train: {lr: 0.1}\ntrain: {epochs: 2}\n", "lines 3 and 4", "'train'"),
    ("model:\n  name: a\n  name: b\n" + BASE.split("\n", 1)[1], "lines 2 and 3", "'name'"),
    (BASE + "data2: {x: 1, x: 2}\n", "both on line 3", "'x'"),
    (BASE + "data3:\n  - {a: 1}\n  - {b: 1, b: 2}\n", "both on line 5", "'b'"),
])
def test_a_key_written_twice_is_refused_naming_both_lines(tmp_path, text, line, key):
    message = _error(tmp_path, text)
    assert "written twice" in message and line in message and key in message


def test_yaml_anchors_and_merge_keys_still_load(tmp_path):
    """A merge key (<<) followed by a key it also brings is YAML's way to override: not a duplicate."""
    text = BASE + "eval: &e {max_new_tokens: 8, generations: 1}\ntrain:\n  <<: {lr: 0.001, epochs: 2}\n  epochs: 3\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.train.lr == pytest.approx(1e-3) and cfg.train.epochs == 3 and cfg.eval.max_new_tokens == 8


@pytest.mark.parametrize("override, named", [
    ("train.lr=[1e-4", "train.lr"),
    ("data.columns={instruction: q", "data.columns"),
    ("train.lr='unterminated", "train.lr"),
])
def test_an_override_that_is_not_yaml_names_the_setting(tmp_path, override, named):
    message = _error(tmp_path, BASE, [override])
    assert f"command line: {named}" in message and "not valid YAML" in message and "Traceback" not in message


@pytest.mark.parametrize("section, key, suggested", [
    ("train", "learning_rate", "lr"), ("train", "batchsize", "batch_size"), ("train", "num_epochs", "epochs"),
    ("train", "gradient_accumulation_steps", "grad_accum"), ("data", "max_seq_length", "max_length"),
    ("model", "model_name_or_path", "name"), ("train", "seed", "run.seed"), ("method", "lora_rank", None),
])
def test_names_from_other_tools_get_lmforge_names(tmp_path, section, key, suggested):
    text = BASE + f"{section}: {{{key}: 1}}\n" if section not in ("model", "data") else \
        BASE.replace(f"{section}: {{", f"{section}: {{{key}: 1, ")
    if suggested is None:  # method parameters are checked by the method (plan_run): see tests/e2e/test_bad_inputs.py
        return
    assert f"{section}.{key}: unknown key; did you mean '{suggested}'?" in _error(tmp_path, text)


def test_a_typo_in_a_source_gets_a_did_you_mean_and_no_union_noise(tmp_path):
    message = _error(tmp_path, BASE.replace("train: data.jsonl", "train: {path: data.jsonl, limt: 5}"))
    assert "data.train.limt: unknown key; did you mean 'limit'?" in message
    assert "valid list" not in message and "SourceConfig" not in message
    message = _error(tmp_path, BASE.replace("train: data.jsonl", "train: [{path: a.jsonl}, {pth: b.jsonl}]"))
    assert "data.train.1.pth: unknown key; did you mean 'path'?" in message and "valid dictionary" not in message
