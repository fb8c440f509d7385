"""The bad inputs users make, as a table: config files, command-line arguments, data files, run and output folders.

Every row runs the real CLI entry point (``lmforge.cli.main.main``, in this process for speed; the
subprocess tests in test_cli_errors.py cover the same path with a fresh interpreter) from a
project folder inside a fresh workspace, and asserts:

- exit status 2 and no traceback (an exception escaping ``main`` fails the row);
- the culprit named: the file:line, setting or option in the message;
- every file in the workspace that existed before (data, configs, models, the user's folders) is
  byte-identical afterwards (sha256), none was deleted;
- nothing was written anywhere in the workspace except inside the row's chosen output folder.

Server request rows (4xx JSON bodies) live in the server's own tests (tests/unit/serve, owned with
the server).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

QA_ROWS = [{"question": q, "answer": a} for q, a in [
    ("what is a bond?", "a loan to a company."), ("what is a stock?", "a share of a company."),
    ("what is credit?", "money you borrow."), ("is the rate good?", "yes, it is good.")] * 3]
QA = "".join(json.dumps(r) + "\n" for r in QA_ROWS)
RUN = "out/run"  # the run folder every config chooses (relative to the project folder)


def base_config(**changes) -> dict:
    """A valid LoRA run on the tiny Llama over data/qa.jsonl; ``changes``: "section.key" -> value (None deletes)."""
    cfg = {
        "run": {"output_dir": RUN},
        "model": {"name": "MODEL"},
        "data": {"format": "instruction", "train": "data/qa.jsonl", "columns": {"instruction": "question", "output": "answer"}},
        "method": {"name": "lora", "r": 4},
        "train": {"max_steps": 1, "batch_size": 2}, "runtime": {"precision": "fp32"},
        "eval": {"before": False, "generations": 0},
    }
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return cfg


@dataclass(frozen=True)
class Case:
    """One bad input: the files of the project folder, the command, what the message must name."""

    id: str
    argv: tuple[str, ...]
    needles: tuple[str, ...]
    config: dict | str | None = field(default_factory=base_config)  # run.yaml (dict -> YAML; str written as is)
    files: dict[str, str | bytes] = field(default_factory=lambda: {"data/qa.jsonl": QA})
    allowed: str | None = RUN  # the only folder (relative to the project) that may change
    setup: Callable[[Path], None] | None = None  # extra preparation of the project folder
    absent: tuple[str, ...] = ()  # text the message must NOT hold


def train(*extra: str) -> tuple[str, ...]:
    return ("train", "run.yaml", *extra)


def _lmforge_run_folder(project: Path, *, files: tuple[str, ...] = (), marker: str = "run", config: bool = False) -> None:
    """A run folder lmforge wrote, with checkpoints/last holding only ``files`` (each "{}")."""
    last = project / RUN / "checkpoints" / "last"
    last.mkdir(parents=True)
    (project / RUN / ".lmforge").write_text(json.dumps({"kind": marker}))
    resolved = (project / "run.yaml").read_text() if config else "written by lmforge\n"
    (project / RUN / "config.yaml").write_text(resolved)
    for name in files:
        (last / name).write_text("{}")


def _trained_run_folder(project: Path, *, changes: tuple[str, ...] = (), inputs: dict | None = None,
                        status: dict | None = None) -> None:
    """A run folder lmforge wrote for run.yaml: its resolved config (with ``changes`` applied, as if the run had
    been started with them), a checkpoint, and optionally its inputs.json / status.json."""
    from lmforge.config import load_config, save_resolved
    from lmforge.pipeline.plan import plan_run

    _lmforge_run_folder(project, files=("state.json",))
    save_resolved(plan_run(load_config(project / "run.yaml", list(changes))).resolved_config(), project / RUN)
    if inputs is not None:
        (project / RUN / "inputs.json").write_text(json.dumps(inputs))
    if status is not None:
        (project / RUN / "status.json").write_text(json.dumps(status))


def _running(project: Path) -> None:
    import socket
    import time

    _trained_run_folder(project, status={"phase": "train", "pid": 1, "host": socket.gethostname(), "step": 3,
                                         "started": time.time() - 30, "updated": time.time()})


def _copy_model(project: Path) -> None:
    shutil.copytree(MODEL_DIR[0], project / "model")


CLS_ONE_LABEL = "".join(json.dumps({"text": f"text {i}", "label": "good"}) + "\n" for i in range(8))
PREF_NO_REJECTED = json.dumps({"prompt": "a", "chosen": "b"}) + "\n"
CHAT_ENDS_WITH_USER = json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n"
CHAT_BAD_ROLE = json.dumps({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}) + "\n"
CHAT = {"format": "chat", "columns": {}}
NOTES = json.dumps({"title": "refunds", "body": "within 30 days"}) + "\n"  # columns no format is told by

CASES = [
    # --- the config file -----------------------------------------------------------------------
    Case("yaml-syntax", train(), ("run.yaml:", "invalid YAML"), config="model: {name: MODEL\ndata:\n  format: [\n"),
    Case("yaml-duplicate-section", train(), ("run.yaml:", "'train'", "lines"),
         config="model: {name: MODEL}\ntrain: {lr: 0.1}\ndata: {format: instruction, train: data/qa.jsonl}\ntrain: {max_steps: 1}\n"),
    Case("yaml-duplicate-key-in-flow", train(), ("'format'", "twice"),
         config="model: {name: MODEL}\ndata: {format: chat, train: data/qa.jsonl, format: instruction}\n"),
    Case("yaml-top-level-list", train(), ("top level must be a mapping",), config="- model\n- data\n"),
    Case("yaml-not-utf8", train(), ("run.yaml", "UTF-8"), config=None, files={"data/qa.jsonl": QA, "run.yaml": b"model: {name: caf\xe9}\n"}),
    Case("config-missing", ("train", "nope.yaml"), ("nope.yaml", "not found")),
    Case("config-is-a-folder", ("train", "data"), ("data", "not found")),
    Case("unknown-section", train(), ("trian", "did you mean 'train'"), config=base_config(**{"trian.lr": 0.1})),
    Case("alias-learning-rate", train(), ("train.learning_rate", "'lr'"), config=base_config(**{"train.learning_rate": 0.1})),
    Case("alias-lora-rank", train(), ("method.lora_rank", "'r'"), config=base_config(**{"method.lora_rank": 8})),
    Case("alias-lora-r", train(), ("method.lora_r", "'r'"), config=base_config(**{"method.lora_r": 8})),
    Case("alias-batchsize", train(), ("train.batchsize", "'batch_size'"), config=base_config(**{"train.batchsize": 8})),
    Case("alias-num-epochs", train(), ("train.num_epochs", "'epochs'"), config=base_config(**{"train.num_epochs": 3})),
    Case("setting-in-wrong-section", train(), ("train.seed", "'run.seed'"), config=base_config(**{"train.seed": 3})),
    Case("runtime-key-under-train", train(), ("train.precision", "'runtime.precision'"), config=base_config(**{"train.precision": "fp32"})),
    Case("old-eval-fraction", train(), ("data.eval_fraction", "'data.split.validation'"), config=base_config(**{"data.eval_fraction": 0.2})),
    Case("repetition-penalty-zero", train(), ("eval.repetition_penalty", "greater than 0"), config=base_config(**{"eval.repetition_penalty": 0})),
    Case("source-key-typo", train(), ("data.train.limt", "'limit'"), absent=("valid list",),
         config=base_config(**{"data.train": {"path": "data/qa.jsonl", "limt": 5}})),
    Case("source-wrong-type", train(), ("data.train", "got 5"), config=base_config(**{"data.train": 5})),
    Case("wrong-type", train(), ("train.lr", "fast"), config=base_config(**{"train.lr": "fast"})),
    Case("out-of-range", train(), ("train.batch_size",), config=base_config(**{"train.batch_size": 0})),
    Case("epochs-zero", train(), ("train.epochs", "greater than 0"), config=base_config(**{"train.epochs": 0})),
    Case("split-share-too-big", train(), ("data.split.validation",), config=base_config(**{"data.split.validation": 1.5})),
    Case("unknown-format", train(), ("data.format", "chats"), config=base_config(**{"data.format": "chats"})),
    Case("format-not-told-by-the-data", train(), ("data.format: not set", "data/qa.jsonl:1", "columns: title, body",
                                                  "chat (messages or conversations)"),
         config=base_config(**{"data.format": None, "data.columns": None}), files={"data/qa.jsonl": NOTES}),
    Case("format-not-told-validate", ("validate", "run.yaml"), ("data.format: not set", "data/qa.jsonl:1"),
         config=base_config(**{"data.format": None, "data.columns": None}), files={"data/qa.jsonl": NOTES},
         absent=("required field",)),
    Case("unknown-method", train(), ("lorra", "did you mean 'lora'"), config=base_config(**{"method.name": "lorra"})),
    Case("unknown-objective", train(), ("dpoo", "did you mean 'dpo'"), config=base_config(**{"objective.name": "dpoo"})),
    Case("objective-vs-format", train(), ("data.format", "dpo"), config=base_config(**{"objective.name": "dpo"})),
    Case("column-not-a-field", train(), ("data.columns.question", "not a field"),
         config=base_config(**{"data.columns": {"question": "q", "output": "answer"}})),
    Case("model-missing-multitask", train(), ("model", "required"),  # one model for every task: the user names it
         config=base_config(**{"model": None, "data": {"tasks": [{"name": "qa", "format": "instruction", "train": "data/qa.jsonl",
                                                                  "columns": {"instruction": "question", "output": "answer"}}]}})),
    Case("data-train-missing", train(), ("data.train", "required"), config=base_config(**{"data.train": None})),
    Case("run-name-traversal", train(), ("run.name", "../../etc"), config=base_config(**{"run.name": "../../etc", "run.output_dir": None})),
    Case("run-name-separator", train(), ("run.name", "a/b"), config=base_config(**{"run.name": "a/b", "run.output_dir": None})),
    Case("run-name-absolute", train(), ("run.name", "/tmp/x"), config=base_config(**{"run.name": "/tmp/x", "run.output_dir": None})),
    Case("one-label-list", train(), ("data.labels", "at least 2"),
         config=base_config(**{"data.format": "classification", "data.labels": ["good"], "data.columns": {}})),
    Case("merge-unmergeable", train(), ("export.merged",),
         config=base_config(**{"method": {"name": "prompt_tuning"}, "export.merged": True})),
    Case("packing-classification", train(), ("data.packing",),
         config=base_config(**{"data.format": "classification", "data.columns": {}, "data.packing": True})),
    Case("grpo-two-rewards", train(), ("objective", "exactly one"),
         config=base_config(**{"objective": {"name": "grpo", "reward": "m:f", "reward_model": "x"}})),
    Case("model-dtype", train(), ("model.dtype",), config=base_config(**{"model.dtype": "fp8"})),
    Case("unknown-model", train(), ("smollm2-135m-instruc", "smollm2-135m-instruct"), config=base_config(**{"model.name": "smollm2-135m-instruc"})),
    # --- command-line arguments --------------------------------------------------------------------
    Case("override-bad-yaml", train("train.lr=[1e-4"), ("train.lr", "not valid YAML")),
    Case("override-no-equals", train("train.lr"), ("train.lr", "section.key=value")),
    Case("override-unknown-key", train("train.lrr=1"), ("train.lrr", "did you mean 'lr'")),
    Case("override-into-a-value", train("model.name.x=1"), ("model.name.x=1", "'name' is not a section")),
    Case("unknown-flag", train("--resme"), ("--resme",)),
    Case("missing-argument", ("data", "prepare"), ("config",)),
    Case("eval-not-a-run-folder", ("eval", "data"), ("data", "not a run folder")),
    Case("export-not-a-run-folder", ("export", "data"), ("data", "not a run folder")),
    Case("compare-top-k", ("compare", "run.yaml", "--top-k", "0"), ("--top-k",)),
    Case("compare-retriever", ("compare", "run.yaml", "--retrievers", "bm26"), ("--retrievers", "bm26")),
    Case("feedback-k", ("feedback", "MODEL", "--out", "fb", "-k", "1"), ("-k",)),
    Case("judge-half-given", ("eval", "run.yaml", "--judge-url", "http://127.0.0.1:9/v1"), ("--judge-url",)),
    # --- data files ---------------------------------------------------------------------------------------
    Case("jsonl-malformed", train(), ("qa.jsonl:2", "malformed JSON"),
         files={"data/qa.jsonl": json.dumps(QA_ROWS[0]) + "\n" + '{"question": "c", "answer": \n'}),
    Case("jsonl-missing-column", train(), ("qa.jsonl:1", "question"),
         files={"data/qa.jsonl": json.dumps({"questions": "a", "answer": "b"}) + "\n"}),
    Case("data-not-utf8", train(), ("qa.jsonl", "UTF-8"), files={"data/qa.jsonl": '{"question": "caf\xe9", "answer": "b"}\n'.encode("latin-1")}),
    Case("data-empty", train(), ("qa.jsonl", "empty"), files={"data/qa.jsonl": ""}),
    Case("data-missing", train(), ("data/missing.jsonl", "no such file"), config=base_config(**{"data.train": "data/missing.jsonl"})),
    Case("data-pattern-no-match", train(), ("data/*.csv", "no data file matches"),
         config=base_config(**{"data.train": "data/*.csv"})),
    Case("pii-terms-file-missing", train(), ("data.prepare.pii.terms.NAME", "no file 'data/names.txt'"),
         config=base_config(**{"data.prepare": {"pii": {"terms": {"NAME": "data/names.txt"}}}})),
    Case("pii-terms-not-utf8", train(), ("data/names.txt:1", "not UTF-8"),
         files={"data/qa.jsonl": QA, "data/names.txt": "Jos\xe9\n".encode("latin-1")},
         config=base_config(**{"data.prepare": {"pii": {"terms": {"NAME": "data/names.txt"}}}})),
    Case("pii-terms-type-name", train(), ("data.prepare.pii.terms", "type name 'name'"),
         config=base_config(**{"data.prepare": {"pii": {"terms": {"name": ["Jo"]}}}})),
    Case("data-unsupported-type", train(), ("qa.xlsx", "unsupported"), files={"data/qa.xlsx": "x"},
         config=base_config(**{"data.train": "data/qa.xlsx"})),
    Case("csv-too-many-values", train(), ("qa.csv:3", "header"), files={"data/qa.csv": "question,answer\na,b\nc,d,e\n"},
         config=base_config(**{"data.train": "data/qa.csv"})),
    Case("json-two-lists", train(), ("qa.json", "exactly one list"), files={"data/qa.json": json.dumps({"a": [], "b": []})},
         config=base_config(**{"data.train": "data/qa.json"})),
    Case("chat-on-qa-columns", train(), ("qa.jsonl:1", "messages", "format: instruction"), config=base_config(**{"data": {**base_config()["data"], **CHAT}})),
    Case("chat-ends-with-user", train(), ("chat.jsonl:1", "last message"), files={"data/chat.jsonl": CHAT_ENDS_WITH_USER},
         config=base_config(**{"data": {**CHAT, "train": "data/chat.jsonl"}})),
    Case("chat-unknown-role", train(), ("chat.jsonl:1", "robot"), files={"data/chat.jsonl": CHAT_BAD_ROLE},
         config=base_config(**{"data": {**CHAT, "train": "data/chat.jsonl"}})),
    Case("classification-one-label", train(), ("cls.jsonl", "all 8", "'good'"), files={"data/cls.jsonl": CLS_ONE_LABEL},
         config=base_config(**{"data": {"format": "classification", "train": "data/cls.jsonl"}, "model.name": "BERT"})),
    Case("classification-unknown-label", train(), ("cls.csv:4", "neutrl"), files={"data/cls.csv": "text,label\ngood,pos\nbad,neg\nok,neutrl\n"},
         config=base_config(**{"data": {"format": "classification", "train": "data/cls.csv", "labels": ["pos", "neg", "neutral"]},
                               "model.name": "BERT"})),
    Case("folder-without-data", train(), ("data", "no data files"), files={"data/notes.docx": "x"},
         config=base_config(**{"data.train": "./data"})),
    Case("unknown-asset", train(), ("fiqaa", "did you mean 'fiqa'"), config=base_config(**{"data.train": "asset:fiqaa"})),
    Case("one-record-no-held-out", train(), ("qa.jsonl", "no held-out example"), files={"data/qa.jsonl": json.dumps(QA_ROWS[0]) + "\n"}),
    Case("preference-missing-field", train(), ("pref.jsonl:1", "rejected"), files={"data/pref.jsonl": PREF_NO_REJECTED},
         config=base_config(**{"data": {"format": "preference", "train": "data/pref.jsonl"}, "objective.name": "dpo"})),
    Case("text-file-for-columns", train(), ("notes.txt", "plain-text"), files={"data/notes.txt": "hello\n"},
         config=base_config(**{"data.train": "data/notes.txt"})),
    Case("reward-file-missing", train(), ("objective.reward", "missing.py"),
         config=base_config(**{"objective": {"name": "grpo", "reward": "missing.py:score", "group_size": 2}})),
    # --- run and output folders ---------------------------------------------------------------------------
    Case("output-dir-is-a-file", train(), ("run.output_dir", "is a file"), files={"data/qa.jsonl": QA, "out/run": "my notes\n"}),
    Case("output-dir-user-folder", train(), ("run.output_dir", "not empty", "notes.txt"), files={"data/qa.jsonl": QA, "out/run/notes.txt": "mine\n"}),
    Case("output-dir-contains-data", train(), ("run.output_dir", "contains the input"), allowed=None,
         config=base_config(**{"run.output_dir": "data"})),
    Case("output-dir-inside-data-folder", train(), ("run.output_dir", "lies inside the input folder"), allowed=None,
         config=base_config(**{"run.output_dir": "data/run", "data.train": "./data"})),
    Case("output-dir-is-the-model", train(), ("run.output_dir", "is the input"), allowed=None, setup=_copy_model,
         config=base_config(**{"run.output_dir": "model", "model.name": "./model"})),
    Case("output-dir-other-kind", train(), ("lmforge data output",), setup=lambda p: _lmforge_run_folder(p, marker="data")),
    Case("checkpoints-without-resume", train(), ("already holds checkpoints", "--resume"), setup=_lmforge_run_folder),
    Case("resume-incomplete-checkpoint", train("--resume"), ("lacks", "optimizer.safetensors", "start this run over"),
         setup=lambda p: _lmforge_run_folder(p, files=("state.json", "optimizer.json", "model.safetensors"))),
    Case("resume-changed-settings", train("--resume"), ("--resume continues the run", "train.lr: 0.01 (the run)"),
         setup=lambda p: _trained_run_folder(p, changes=("train.lr=0.01",))),
    Case("resume-changed-data", train("--resume"), ("on the data it started with", "data/qa.jsonl: changed"),
         setup=lambda p: _trained_run_folder(p, inputs={"data/qa.jsonl": {"bytes": 1, "sha256": "0" * 64}})),
    Case("run-being-trained", train("--resume"), ("another process is training this run now (pid 1",),
         setup=_running),
    Case("compare-documents-missing", ("compare", "run.yaml", "--documents", "docs/nope"), ("docs/nope", "no such file"),
         setup=_trained_run_folder),
    Case("compare-documents-without-text", ("compare", "run.yaml", "--documents", "docs/notes.jsonl"),
         ("docs/notes.jsonl:1", "no text column", "title"), setup=_trained_run_folder,
         files={"data/qa.jsonl": QA, "docs/notes.jsonl": json.dumps({"title": "refunds"}) + "\n"}),
    Case("prepare-out-holds-input", ("data", "prepare", "run.yaml", "--out", "data"), ("--out", "contains the input"), allowed=None),
    Case("prepare-out-user-folder", ("data", "prepare", "run.yaml", "--out", "mine"), ("--out", "not empty"),
         files={"data/qa.jsonl": QA, "mine/a.txt": "x"}, allowed=None),
    Case("prepare-out-is-a-file", ("data", "prepare", "run.yaml", "--out", "data/qa.jsonl"), ("--out", "is a file"), allowed=None),
    Case("prepare-out-is-a-run-folder", ("data", "prepare", "run.yaml", "--out", RUN), ("--out", "lmforge run output"),
         setup=_lmforge_run_folder, allowed=None),
    Case("eval-out-user-folder", ("eval", "run.yaml", "--out", "mine"), ("--out", "not empty"),
         files={"data/qa.jsonl": QA, "mine/a.txt": "x"}, allowed=None),
    Case("export-damaged-checkpoint", ("export", RUN), ("checkpoints/last", "model.safetensors"),
         setup=lambda p: _lmforge_run_folder(p, files=("model.safetensors",), config=True)),
    Case("serve-api-key-env-unset", ("serve", "MODEL", "--api-key-env", "LMF_TEST_UNSET_KEYS"),
         ("$LMF_TEST_UNSET_KEYS is not set", "without API keys"), allowed=None),
    Case("serve-log-terms-unreadable", ("serve", RUN, "log.log_prompts=true"),
         ("serve.log.terms.PATIENT", "no file 'lists/patients.txt'"), setup=_trained_run_folder,
         config=base_config(**{"data.prepare": {"pii": {"terms": {"PATIENT": "lists/patients.txt"}}}})),
    Case("ui-api-key-env-unset", ("ui", "out", "--api-key-env", "LMF_TEST_UNSET_KEYS"),
         ("$LMF_TEST_UNSET_KEYS is not set",), allowed=None),
    Case("feedback-out-user-folder", ("feedback", "MODEL", "--prompts", "data/p.txt", "--out", "mine"), ("--out", "not empty"),
         files={"data/p.txt": "hello\n", "mine/a.txt": "x"}, allowed=None),
]
MODEL_DIR: list[Path] = []


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _materialise(case: Case, project: Path, model: Path, bert: Path) -> None:
    def fill(text):
        return text.replace("MODEL", str(model)).replace("BERT", str(bert)) if isinstance(text, str) else text

    for rel, content in case.files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    if isinstance(case.config, dict):
        (project / "run.yaml").write_text(fill(yaml.safe_dump(case.config, sort_keys=False)))
    elif isinstance(case.config, str):
        (project / "run.yaml").write_text(fill(case.config))
    if case.setup is not None:
        case.setup(project)


def _run(argv: list[str], project: Path, monkeypatch) -> tuple[int, str]:
    """(exit status, stderr) of ``lmforge ARGV`` run in ``project``; an escaping exception fails the test."""
    from lmforge.cli.main import main

    monkeypatch.chdir(project)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, tmp_path, tiny_llama_dir, tiny_bert_dir, monkeypatch):
    MODEL_DIR[:] = [tiny_llama_dir]
    workspace = tmp_path / "ws"
    project = workspace / "proj" / "sub"  # a run name like ../../etc would land inside the workspace
    project.mkdir(parents=True)
    _materialise(case, project, tiny_llama_dir, tiny_bert_dir)
    before = _snapshot(workspace)
    argv = [a.replace("MODEL", str(tiny_llama_dir)) for a in case.argv]

    code, stderr = _run(argv, project, monkeypatch)

    assert code == 2, f"exit {code}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr
    for needle in case.needles:
        assert needle in stderr, f"{needle!r} not named in:\n{stderr[-3000:]}"
    for text in case.absent:
        assert text not in stderr, stderr[-3000:]
    after = _snapshot(workspace)
    prefix = str(Path("proj") / "sub" / case.allowed) if case.allowed else None
    inside = (lambda p: p == prefix or p.startswith(prefix + "/") or prefix.startswith(p + "/")) if prefix else (lambda p: False)
    changed = [p for p in before if after.get(p) != before[p] and not inside(p)]  # lmforge's own run folder may change
    assert not changed, f"inputs changed or deleted: {changed}"
    stray = [p for p in after if p not in before and not inside(p)]  # the chosen folder and the parents it needs
    assert not stray, f"written outside the chosen folder: {stray}"
