"""The package tree is the pipeline: imports point upstream only; config stays torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "lmforge"
ROOT = SRC.parents[1]
ORDER = ["config", "data", "model", "methods", "objectives", "train", "evaluate", "export", "serve", "ui"]
# methods and objectives are independent axes at the same depth: neither imports the other.
RANK = {"config": 0, "data": 1, "model": 2, "methods": 3, "objectives": 3, "train": 4, "evaluate": 5, "export": 6, "serve": 7,
        "ui": 8}
# Torch-free modules every stage may use.
SHARED = {"errors", "atomic", "outputs", "status", "progress", "__init__"}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "lmforge" else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_imports_point_upstream():
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).parts
        stage = rel[0] if len(rel) > 1 else None
        if stage not in RANK:
            continue
        for module in _imports(path):
            target = _stage(module)
            if target is None or target in SHARED or target not in RANK or target == stage:
                continue
            if RANK[target] > RANK[stage] or (RANK[target] == RANK[stage]):
                bad.append(f"{path.relative_to(SRC)} imports {module}")
    assert not bad, "imports against the pipeline direction:\n" + "\n".join(bad)


def test_validate_imports_no_torch(tmp_path):
    """validate reads the first records of every source (JSONL, CSV, JSON, Parquet) without torch or datasets."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    row = {"question": "what is a bond?", "answer": "a loan."}
    (tmp_path / "a.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "b.csv").write_text("question,answer\nwhat is a bond?,a loan.\n")
    (tmp_path / "c.json").write_text(json.dumps([row]))
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "d.parquet")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: x}\ndata: {format: instruction, columns: {instruction: question, output: answer},\n"
                   "  train: [a.jsonl, b.csv, c.json, d.parquet]}\n")
    code = (
        "import sys; from lmforge.cli.main import main; rc = main(['validate', %r]); "
        "heavy = [m for m in ('torch', 'datasets', 'transformers') if m in sys.modules]; "
        "assert not heavy, f'validate imported {heavy}'; sys.exit(rc)" % str(cfg)
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert ": ok" in proc.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")) + [SRC / "quickstart.yaml"], ids=lambda p: p.name)
def test_example_configs_validate(path):
    """Every example passes `lmforge validate`: config, plan and the first records of its data."""
    from lmforge.pipeline.validate import validate_config

    result = validate_config(path)
    assert not result.errors, result.errors
    assert result.plan.method.name and result.plan.objective.name


def test_cli_calls_only_the_pipeline():
    """The CLI parses arguments, loads the config and calls lmforge.pipeline: no stage imports."""
    allowed = {"cli", "config", "errors", "pipeline"}
    bad = [f"{path.relative_to(SRC)} imports {module}"
           for path in (SRC / "cli").rglob("*.py") for module in _imports(path)
           if _stage(module) is not None and _stage(module) not in allowed]
    assert not bad, "the CLI reaches past the pipeline:\n" + "\n".join(bad)


def test_glue_modules_stay_small():
    """One pipeline module per command, each readable top to bottom (DESIGN.md: none past ~250 lines)."""
    sizes = {p.name: len(p.read_text().splitlines()) for p in (SRC / "pipeline").glob("*.py")}
    assert sizes and max(sizes.values()) <= 250, sizes


def test_only_multitask_branches_on_tasks():
    """Commands never branch on multi-task: only pipeline/multitask.py reads ``data.tasks``; the rest of
    the glue calls the Session's task object (SingleTask / MultiTask) or multitask's functions."""
    readers = sorted(p.name for p in (SRC / "pipeline").glob("*.py")
                     if p.name != "multitask.py" and any(isinstance(node, ast.Attribute) and node.attr == "tasks"
                                                          and isinstance(node.value, ast.Attribute) and node.value.attr == "data"
                                                          for node in ast.walk(ast.parse(p.read_text()))))
    assert not readers, f"these glue modules read data.tasks themselves: {readers}"
