"""Resolve a config's open choices (method, objective) and check cross-axis rules. Torch-free.

This is what ``lmforge validate`` runs: it imports the registries (specs and config classes
only), never an implementation, so it needs no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import ValidationError

from lmforge.config.load import format_validation_error
from lmforge.config.schema import RunConfig
from lmforge.data.formats import FormatSpec, check_data_config, formats_of
from lmforge.errors import UserError
from lmforge.methods.registry import MethodParams, MethodSpec, get_method_spec, is_mergeable
from lmforge.objectives.registry import ObjectiveParams, ObjectiveSpec, get_objective_spec
from lmforge.pipeline.multitask import check_config as check_multitask


@dataclass(frozen=True)
class RunPlan:
    """The config plus its resolved choices; derived values live here, never in the config.

    ``config`` is the user's config with the method's defaults filled in where it left them open
    (:func:`resolve_method_defaults`): a new frozen object, what the run folder's config.yaml records.
    """

    config: RunConfig
    method: MethodSpec
    method_params: MethodParams
    objective: ObjectiveSpec
    objective_params: ObjectiveParams
    data_format: FormatSpec

    @property
    def best_metric(self) -> str:
        return self.config.eval.metric or self.objective.default_metric

    @property
    def metric_mode(self) -> str:
        metric = self.best_metric
        if metric == self.objective.default_metric:
            return self.objective.metric_mode
        return "min" if metric.endswith(("loss", "perplexity", "error")) else "max"

    @property
    def generative(self) -> bool:
        """The run's examples have prompts and reference answers to generate (sample answers, generation metrics)."""
        return self.data_format.generative

    def resolved_config(self) -> RunConfig:
        """The config with every choice it left open filled in: the objective the data format chose and
        every method / objective parameter at its value (defaults included). Saved as the run folder's
        ``config.yaml``: training from that file plans the same run."""
        from lmforge.config.schema import ChoiceConfig

        def choice(name: str, params) -> ChoiceConfig:
            return ChoiceConfig(name=name, **params.model_dump(mode="json"))

        return self.config.model_copy(update={"method": choice(self.method.name, self.method_params),
                                              "objective": choice(self.objective.name, self.objective_params)})

    @property
    def export_merged(self) -> bool:
        merged = self.config.export.merged
        return is_mergeable(self.method, self.method_params) if merged is None else merged


def plan_run(config: RunConfig, source: str = "<config>") -> RunPlan:
    """Validate the method / objective parameters and every cross-axis rule."""
    where = source
    data_format = check_data_config(config.data, f"{where}: data")
    method = get_method_spec(config.method.name)
    method_params = _params(method.params, config.method.params, "method", source)
    objective = get_objective_spec(config.objective_name or data_format.default_objective)
    objective_params = _params(
        objective.params, config.objective.params if config.objective else {}, "objective", source
    )
    check_consumes(objective, data_format, f"{where}: data.format")
    check_multitask(config, objective, where)
    objective_params.check_run(config, where)  # rules that depend on the objective's own settings
    if method.objectives is not None and objective.name not in method.objectives:
        raise UserError(
            f"method '{method.name}' does not support objective '{objective.name}'",
            where=f"{where}: method.name",
            hint=f"it supports: {', '.join(method.objectives)}",
        )
    if config.export.merged and not is_mergeable(method, method_params):
        raise UserError(
            f"method '{method.name}' cannot be merged into the base weights",
            where=f"{where}: export.merged",
            hint="set export.merged: false (the trained add-on is exported on its own)",
        )
    if config.data.packing and not objective.can_pack:
        raise UserError(
            f"objective '{objective.name}' cannot train on packed rows",
            where=f"{where}: data.packing",
            hint="set data.packing: false",
        )
    if config.data.packing and not method.can_pack:
        raise UserError(
            f"method '{method.name}' cannot train on packed rows (its virtual tokens would be shared by "
            "every sequence packed into a row)",
            where=f"{where}: data.packing",
            hint="set data.packing: false",
        )
    method_params.check_run(config, objective, where)  # rules that depend on the method's own settings
    return RunPlan(resolve_method_defaults(config, method, objective.head), method, method_params, objective,
                   objective_params, data_format)


def resolve_method_defaults(config: RunConfig, method: MethodSpec, head: str = "causal_lm") -> RunConfig:
    """``config`` with ``train.lr`` and ``train.epochs`` set to the method's defaults for the objective's
    ``head`` (:meth:`MethodSpec.lr_for`, :meth:`MethodSpec.epochs_for`) where the user left them unset
    (None); a value the user set is kept. Returns a new config; the given one is never mutated."""
    update = {}
    if config.train.lr is None:
        update["lr"] = method.lr_for(head)
    if config.train.epochs is None:
        update["epochs"] = method.epochs_for(head)
    if not update:
        return config
    return config.model_copy(update={"train": config.train.model_copy(update=update)})


def check_consumes(objective: ObjectiveSpec, data_format: FormatSpec, where: str) -> None:
    """UserError unless ``objective`` trains on data of ``data_format``'s kind."""
    if data_format.kind not in objective.kinds:
        raise UserError(f"objective '{objective.name}' does not train on data.format '{data_format.name}'",
                        where=where, hint=f"use one of: {', '.join(formats_of(objective.kinds))}")


def _params(cls, raw: dict, section: str, source: str):
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        head, *lines = format_validation_error(exc, cls).split("\n  ")
        lines = [f"{section}.{line}" if re.match(r"^[\w.\[\]]+: ", line) else f"{section}: {line}" for line in lines]
        raise UserError("\n  ".join([head, *lines]), where=source) from None
