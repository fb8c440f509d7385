"""The README's config reference is generated from the schema and registries: it must be current."""

from pathlib import Path

from lmforge.reference import config_reference, readme_section

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_config_reference_is_current():
    assert readme_section(README.read_text()) == config_reference(), (
        "README config reference is stale: run `python -m lmforge.reference --write README.md`"
    )


def test_readme_starts_with_the_two_commands():
    head = README.read_text()[:600]
    assert "make demo" in head and "make test" in head
