"""`lmforge validate`: every problem of a config and of its data, all at once, without importing torch.

1. the YAML file and the command-line overrides (a problem here stops the check: nothing else can be read);
2. the config against the schema: every wrong key or value, each with a did-you-mean;
3. the method / objective parameters and cross-axis rules (:func:`lmforge.plan.plan_run`), on the
   sections that are valid (an invalid section is replaced by its defaults for this step);
4. the first records of every data source (:func:`lmforge.data.check.check_sources`): missing
   files, empty datasets, missing columns, records that do not fit the format;
5. ``model.name``: a local path that does not exist is a problem, a name that is neither built in nor local gets a
   note (it will be looked up on the hub), with a did-you-mean over the built-in names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from lmforge.config.load import format_validation_error, read_config
from lmforge.config.schema import RunConfig
from lmforge.errors import UserError
from lmforge.model.source import check_model_name
from lmforge.pipeline.configfile import with_data_defaults
from lmforge.pipeline.plan import RunPlan, plan_run


def run_validate(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                 say: Callable[[str], None] = print) -> str:
    """The one-line summary of a valid config (notes on unread sources go to ``say``); UserError listing
    every problem otherwise."""
    result = validate_config(path, overrides)
    for note in result.notes:
        say(f"note: {note}")
    if result.errors:
        raise UserError(problems_message(result), where=str(path))
    config, plan = result.config, result.plan
    from lmforge.pipeline.multitask import tasks_summary

    tasks = tasks_summary(config.data)
    return (f"{path}: ok  (model {config.model.name}, data {config.data.format}{tasks}, "
            f"method {plan.method.name}, objective {plan.objective.name})")

# What the schema says when detection could not fill a value in: the format itself, and the model (picked for the
# task once the format is known); the detection problem already says what to do.
UNFILLED = ("format: required field is missing", "model: required field is missing")


@dataclass
class Validation:
    """The outcome: the config and plan when they could be built, every problem found, and notes."""

    config: RunConfig | None
    plan: RunPlan | None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def validate_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, first: int = 5) -> Validation:
    """Check ``path`` + ``overrides`` in every way that needs no model (see the module doc).

    ``first``: records read per data source. Raises UserError only when the file or an override
    cannot be read at all; every other problem is collected into ``Validation.errors``.
    """
    from lmforge.data.check import check_sources

    raw = read_config(path, overrides)
    result = Validation(None, None)
    try:
        raw, result.notes = with_data_defaults(raw)
    except UserError as exc:  # says why a format is missing: instead of the schema's "required field is missing"
        result.errors.append(str(exc))
    undetected = bool(result.errors)
    config = _parse(raw, result)
    if undetected:
        result.errors = result.errors[:1] + [e for e in result.errors[1:] if not e.endswith(UNFILLED)]
    if config is not None:
        try:
            result.plan = plan_run(config, source=str(path))
        except UserError as exc:
            text = str(exc).removeprefix(f"{path}: ")
            result.errors += ([line.strip() for line in text.splitlines()[1:]] if text.startswith("invalid config:")
                              else [text])
        from lmforge.pipeline.multitask import task_sections

        try:
            sections = task_sections(config.data)
        except UserError as exc:
            sections, result.errors = [], result.errors + [str(exc)]
        errors, notes = check_sources(config.data, sections, first)
        result.notes += notes
        result.errors = list(dict.fromkeys(result.errors + errors))  # a task problem plan_run found too
        result.errors += _terms_problems(config)
        model_error, model_note = check_model_name(config.model.name)
        result.errors += [model_error] if model_error else []
        result.notes += [model_note] if model_note else []
    return result


def _terms_problems(config: RunConfig) -> list[str]:
    """``data.prepare.pii.terms`` files that cannot be read (missing, not UTF-8, empty)."""
    from lmforge.data.prepare.pii import read_terms

    problems = []
    for kind, value in (config.data.prepare.pii.terms.items() if config.data.prepare is not None else ()):
        try:
            read_terms(kind, value)
        except UserError as exc:
            problems.append(str(exc))
    return problems


def _parse(raw: dict, result: Validation) -> RunConfig | None:
    """The config (kept in ``result.config`` when valid); on schema errors, record them and return a config
    to check the rest with: the raw one without each invalid key (a misspelt ``data.max_lenght`` must not hide
    ``method.rank``), else with the invalid top-level sections at their defaults (None when neither builds)."""
    try:
        result.config = RunConfig.model_validate(raw)
        return result.config
    except ValidationError as exc:
        result.errors += [line.strip() for line in format_validation_error(exc, RunConfig).splitlines()[1:]]
        locs = [tuple(err["loc"]) for err in exc.errors() if err["loc"]]
    try:
        return RunConfig.model_validate(_without(raw, locs))
    except ValidationError:
        pass
    bad = {str(loc[0]) for loc in locs}
    try:
        return RunConfig.model_validate({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:
        return None


def _without(raw: dict, locs: list[tuple]) -> dict:
    """A deep copy of ``raw`` with the value at each error location removed (where it is a mapping key)."""
    import copy

    pruned = copy.deepcopy(raw)
    for loc in locs:
        node = pruned
        for key in loc[:-1]:
            node = node.get(key) if isinstance(node, dict) else node[key] if (
                isinstance(node, list) and isinstance(key, int) and key < len(node)) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(loc[-1], None)
    return pruned


def problems_message(result: Validation) -> str:
    """All problems of ``result`` as one message (one per line, continuation lines indented)."""
    count = len(result.errors)
    items = ["- " + error.replace("\n", "\n    ") for error in result.errors]
    return f"{count} problem{'s' if count != 1 else ''}:\n  " + "\n  ".join(items)
