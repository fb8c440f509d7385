"""The docs stay true to the code: the config reference in docs/config.md is generated from the schema and
the registries and must be current; every YAML snippet in the README and docs/*.md is a valid config."""

import re
from pathlib import Path

import pytest
import yaml

from lmforge.config.load import parse_config
from lmforge.config.schema import RunConfig
from lmforge.pipeline.plan import plan_run
from lmforge.reference import DOC, config_reference, generated_section

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# The smallest complete config; a snippet is merged over it, so a snippet may show one section only.
BASE = {"model": {"name": "smollm2-135m-instruct"}, "data": {"format": "text", "train": "data.jsonl"}}


def test_config_reference_is_current():
    assert generated_section((ROOT / DOC).read_text()) == config_reference(), (
        f"{DOC} config reference is stale: run `python -m lmforge.reference --write {DOC}`"
    )


def test_readme_starts_with_the_two_commands():
    head = README.read_text()[:600]
    assert "make demo" in head and "make test" in head


def test_readme_links_the_config_reference():
    assert "docs/config.md" in README.read_text()


def _merge(base: dict, snippet: dict) -> dict:
    out = dict(base)
    for key, value in snippet.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    if "tasks" in out.get("data", {}) and "tasks" in snippet.get("data", {}) and "train" not in snippet["data"]:
        out["data"] = {k: v for k, v in out["data"].items() if k != "train"}
    return out


def _snippets() -> list[tuple[str, str]]:
    found = []
    for path in [README, *DOCS]:
        text = path.read_text()
        for match in re.finditer(r"```yaml\n(.*?)```", text, re.S):
            line = text[: match.start()].count("\n") + 2
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


def test_docs_have_yaml_snippets():
    assert len(_snippets()) >= 5  # the check below would pass vacuously if the pattern stopped matching


@pytest.mark.parametrize("where,snippet", _snippets(), ids=[w for w, _ in _snippets()])
def test_yaml_snippets_are_valid_configs(where, snippet):
    """Keys, values, method / objective parameters and cross-axis rules of every snippet, as `validate` checks
    them (data files are not read: snippets name files the reader has)."""
    raw = yaml.safe_load(snippet)
    assert isinstance(raw, dict), where
    unknown = set(raw) - set(RunConfig.model_fields)
    assert not unknown, f"{where}: not config sections: {unknown}"
    plan_run(parse_config(_merge(BASE, raw), where), where)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_point_at_files(path):
    """A link to a file of the repository (README -> docs/x.md, docs/x.md -> y.md, img/...) names a file that exists."""
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        if not (path.parent / target.split("#", 1)[0]).exists():
            missing.append(target)
    assert not missing, f"{path.name}: links to missing files: {missing}"
