"""What run_server accepts: run folders (export/merged or export/adapter), model folders, adapter folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from lmforge.config.serve import ServeConfig
from lmforge.errors import UserError
from lmforge.serve.apierror import APIError
from lmforge.serve.store import jail_path, resolve_target
from lmforge.serve.textstream import TextTracker


def test_run_folder_prefers_merged(tiny_llama_dir, tmp_path):
    shutil.copytree(tiny_llama_dir, tmp_path / "run" / "export" / "merged")
    t = resolve_target(tmp_path / "run", ServeConfig())
    assert t.base == (tmp_path / "run" / "export" / "merged").resolve() and t.name == "run" and not t.adapters


def test_run_folder_with_adapter_serves_it_over_its_base(models_dir, tmp_path):
    shutil.copytree(models_dir / "alpha", tmp_path / "myrun" / "export" / "adapter")
    t = resolve_target(tmp_path / "myrun", ServeConfig())
    assert set(t.adapters) == {"myrun"} and (t.base / "config.json").is_file() and t.name == "base"


def test_adapter_folder_and_bad_targets(models_dir, tmp_path):
    t = resolve_target(models_dir / "alpha", ServeConfig(model_name="b"))
    assert t.name == "b" and "alpha" in t.adapters and t.models_dir == models_dir.resolve()
    with pytest.raises(UserError, match="not a model folder"):
        resolve_target(tmp_path, ServeConfig())
    (tmp_path / "run" / "export").mkdir(parents=True)
    with pytest.raises(UserError, match="lmforge export"):
        resolve_target(tmp_path / "run", ServeConfig())


@pytest.mark.parametrize("adapters", [{"../x": "alpha"}, {"a/b": "alpha"}, {".hidden": "alpha"}, {"": "alpha"},
                                      {"x": "../../etc"}, {"x": "/etc"}, {"x": "alpha/../../etc"}])
def test_configured_adapter_names_are_names_and_paths_stay_relative(adapters):
    with pytest.raises(ValidationError, match="adapters"):
        ServeConfig(adapters=adapters)


def test_configured_adapter_paths_are_jailed(tiny_llama_dir, models_dir, tmp_path):
    jail = tmp_path / "jail"
    jail.mkdir()
    (jail / "out").symlink_to(models_dir / "alpha")  # a real adapter, but outside the jail
    (jail / "empty").mkdir()
    for rel, needle in (("out", "leaves the models directory"), ("empty", "no adapter_config.json"),
                        ("missing", "no adapter_config.json"), ("x" * 5000, "")):
        with pytest.raises(UserError, match="serve.adapters.x") as err:
            resolve_target(tiny_llama_dir, ServeConfig(models_dir=str(jail), adapters={"x": rel}))
        assert needle in str(err.value)
    assert jail_path(models_dir, "alpha") == (models_dir / "alpha").resolve()
    with pytest.raises(APIError) as api:
        jail_path(models_dir, "../alpha")
    assert api.value.status == 403


def test_api_keys_from_env(monkeypatch):
    monkeypatch.setenv("LMF_KEYS", "a, b")
    assert ServeConfig(api_keys=["k"], api_key_env="LMF_KEYS").resolved_api_keys() == ["k", "a", "b"]


@pytest.mark.parametrize("value", [None, "", " , "])
def test_an_api_key_variable_without_keys_refuses_to_start_an_open_server(monkeypatch, value):
    """`--api-key-env MY_KEY` with MY_KEY unset used to start a server that answered anyone."""
    from lmforge.errors import UserError

    monkeypatch.delenv("LMF_NO_KEYS", raising=False)
    if value is not None:
        monkeypatch.setenv("LMF_NO_KEYS", value)
    with pytest.raises(UserError, match=r"\$LMF_NO_KEYS (is not set|holds no key), so the server would start "
                                        r"without API keys") as err:
        ServeConfig(api_key_env="LMF_NO_KEYS").resolved_api_keys()
    assert "export LMF_NO_KEYS=key1,key2" in err.value.hint
    assert ServeConfig().resolved_api_keys() == []  # no variable named: no keys, loopback only (check_bind)


def test_text_tracker_holds_back_stop_prefixes(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    ids = tok("the bank loan is good", add_special_tokens=False)["input_ids"]
    tr = TextTracker(tok, ["loan is"])
    out, hit = [], False
    for i in ids:
        delta, hit = tr.add(i)
        out.append(delta)
        if hit:
            break
    assert hit and "".join(out).strip() == "the bank" and "loan" not in "".join(out)


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bf16_for_causal_lms_only_where_bf16_is_native(native, tiny_llama_dir, monkeypatch):
    import torch

    from lmforge.serve.store import ModelStore, ServeTarget, serve_dtype

    monkeypatch.setattr("lmforge.model.decode.native_bf16", lambda device: native)
    assert serve_dtype("auto", "causal") == ("bfloat16" if native else "float32")
    assert serve_dtype("auto", "classifier") == serve_dtype("auto", "encoder") == "float32"
    assert serve_dtype("float32", "causal") == "float32" and serve_dtype("bfloat16", "encoder") == "bfloat16"
    assert ServeConfig().dtype == "auto"
    store = ModelStore(ServeTarget(base=Path(tiny_llama_dir), name="m", models_dir=Path(tiny_llama_dir)))
    assert store.model.dtype == (torch.bfloat16 if native else torch.float32)
    with pytest.raises(ValidationError):
        ServeConfig(dtype="int4")


def test_developer_messages_are_rendered_as_system_as_in_training(tiny_tokenizer_dir):
    """Training data maps OpenAI's "developer" role to system (lmforge.data.records.ROLES); the server does too,
    so a served model sees the role it was trained with."""
    from transformers import AutoTokenizer

    from lmforge.serve.completion import chat_prompt_ids
    from lmforge.serve.protocol import ChatRequest

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)

    def ids(role):
        return chat_prompt_ids(tok, ChatRequest.model_validate(
            {"messages": [{"role": role, "content": "Be brief."}, {"role": "user", "content": "hi"}]}))

    assert ids("developer") == ids("system")
    assert "developer" not in tok.decode(ids("developer"))
