"""Build the registry from ``registry_plan.toml``: every record re-derived, none typed by hand."""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import sympy

from phiforge.derive.catalogue import catalogue_method
from phiforge.derive.check import check_tableau
from phiforge.derive.construct import (
    FORMS,
    FREE_PARAMETER_RULE,
    choose_nodes,
    construct_embedded,
    construct_operator,
    construct_singlestep,
    principal_error,
)
from phiforge.derive.errors import InputError, integer_in
from phiforge.derive.multistep import (
    eta_noise_variances,
    exponential_adams,
    exponential_adams_moulton,
    published_multistep,
)
from phiforge.derive.records import Record
from phiforge.derive.registry import multistep_record, save_record, singlestep_record
from phiforge.derive.registry_folders import check_method_name
from phiforge.derive.tableau import ExpRKTableau

__all__ = ["build_record", "build_registry", "plan_entries"]


def plan_entries() -> dict[str, dict[str, Any]]:
    text = resources.files("phiforge.derive").joinpath("registry_plan.toml").read_text("utf-8")
    return tomllib.loads(text)


def derive_singlestep_record(
    name: str,
    stages: int,
    order: int,
    *,
    nodes=None,
    node_grid=None,
    assumptions: str = "none",
    prediction: str | None = None,
    description: str = "",
    setting: str = "scalar",
    weak_top: bool = False,
    embedded: int | None = None,
    zero: tuple[str, ...] | list[str] = (),
    own_scale: bool = False,
    form: str = "expanded",
    fix: dict[str, Any] | None = None,
    series: dict[str, Any] | None = None,
) -> Record:
    """Construct a method and return its record (raises if it cannot). In the operator setting
    ``zero`` (coefficients fixed to 0, e.g. ("b2", "a4_3")) and ``own_scale`` (row i only in
    phi_k(c_i z)) structure the ansatz as Luan's and Luan-Ostermann's constructions do
    (:func:`~phiforge.derive.construct.construct_operator`). ``form="program"`` (scalar
    setting, given nodes) records the straight-line program of the named elimination
    (:func:`~phiforge.derive.construct.construct_singlestep`): its definitions, the
    coefficients as their names, the domain z <= 0; the verdicts of both settings come from the
    checker run on the program (:class:`~phiforge.derive.program_check.ProgramTableau`).
    ``fix`` sets coefficients to values of the user's choice (scalar setting, given nodes);
    ``series`` gives a program's definitions Taylor expansions ({name: [[center, radius,
    degree], ...]}, :func:`~phiforge.derive.straightline.with_series`)."""
    check_method_name(name, "name")
    integer_in(stages, "'stages'", 1, 16)
    integer_in(order, "'order'", 1, 16)
    if nodes is not None:
        nodes = checked_nodes(nodes, "nodes")
    if node_grid is not None:
        node_grid = checked_nodes(node_grid, "node_grid")
    metadata = {"prediction": prediction, "description": description}
    provenance: dict[str, Any] = {
        "kind": "derived",
        "family": "singlestep",
        "stages": stages,
        "order": order,
        "setting": setting,
        "assumptions": assumptions,
    }
    if form not in FORMS:
        raise InputError(f"parameter 'form' (--coefficients) must be one of {FORMS}, got {form!r}")
    if fix and (setting != "scalar" or nodes is None):
        raise InputError(
            "parameter 'fix' (--fix) applies to the scalar construction on given nodes "
            "(parameter 'nodes')"
        )
    if form == "program" and (setting != "scalar" or nodes is None or embedded is not None):
        raise InputError(
            "parameter 'form' (--coefficients): 'program' constructs the scalar setting on "
            "given nodes (parameter 'nodes'), without an embedded companion"
        )
    if setting != "operator" and (zero or own_scale):
        raise InputError(
            "parameters 'zero' and 'own_scale' structure the operator setting's ansatz; the "
            "scalar construction solves for every coefficient (use --setting operator)"
        )
    if setting == "operator":
        if nodes is None:
            raise InputError("parameter '--nodes' is required in the operator setting")
        result = construct_operator(
            stages,
            order,
            nodes,
            weak_top=weak_top,
            name=name,
            zero=tuple(zero),
            own_scale=own_scale,
            **metadata,
        )
        if not result.success:
            raise InputError(
                f"{name}: no {stages}-stage method of order {order} for nodes {nodes}: "
                f"blocked by {result.blocked_by}"
            )
        provenance["weak_top"] = weak_top
        if zero or own_scale:
            provenance["ansatz"] = {"zero": list(zero), "own_scale": own_scale}
    elif node_grid is not None:
        result, table = choose_nodes(
            stages, order, node_grid, assumptions=assumptions, name=name, **metadata
        )
        provenance["criterion"] = (
            "nodes minimise sqrt(sum over trees t of order p+1 of (w_t Cond_t(0))^2), w_t the "
            "error weights of spec order-conditions.md §4.8, over increasing nodes from the grid"
        )
        provenance["node_grid"] = [str(x) for x in node_grid]
        provenance["candidates_solved"] = len(table)
        provenance["principal_error"] = min(error for _, error in table)
    else:
        # verified below by the record's own check (every condition, both settings)
        result = construct_singlestep(
            stages, order, nodes, assumptions=assumptions, name=name, verify=False, form=form,
            fix=fix, series=series, **metadata,
        )  # fmt: skip
        if fix:
            provenance["fixed"] = {str(k): str(sympy.Rational(str(v))) for k, v in fix.items()}
        if result.tableau is None:
            raise InputError(
                f"{name}: no {stages}-stage method of order {order} for nodes "
                f"{nodes}: blocked by {result.blocked_by}"
            )
        provenance["criterion"] = "nodes given in the plan"
        provenance["principal_error"] = float(principal_error(result.tableau, order))
        if result.program is not None:
            provenance["construction"] = (
                "straight-line program of the elimination with named values "
                "(phiforge.derive.named_elimination)"
            )
    provenance["nodes"] = [str(x) for x in result.nodes]
    provenance["free_parameters"] = result.free_parameters
    provenance["free_parameter_rule"] = FREE_PARAMETER_RULE
    record = singlestep_record(
        result.tableau,
        provenance,
        embedded=embedded_companion(result.tableau, embedded),
        program=result.program,
    )
    kind = "weak_stiff" if weak_top else "stiff"
    reached = record.orders[setting][kind]
    if reached < order:
        raise InputError(
            f"{name}: the construction reaches {kind} order {reached} < {order} in the {setting} "
            "setting (a solved coefficient does not satisfy its condition)"
        )
    return record


def embedded_companion(method: ExpRKTableau, order: int | None) -> dict[str, Any] | None:
    """The embedded companion of ``order`` on the stages of ``method`` (construct_embedded),
    with its scalar-setting stiff order verified by the checker."""
    if order is None:
        return None
    weights = construct_embedded(method, order)
    companion = ExpRKTableau.from_coefficients(
        f"{method.name}_embedded",
        method.c,
        {(i, j): method.a_entry(i, j) for i in range(2, method.stages + 1) for j in range(1, i)},
        weights,
    )
    report = check_tableau(companion, order + 1, "scalar")
    return {
        "order": order,
        "stiff_order": report.stiff_order,
        "classical_order": report.classical_order,
        "construction": "scalar stiff conditions of orders <= order solved for b^ with the "
        "method's a_ij fixed; undetermined weights set to 0 (earliest stages first) unless the "
        "companion would be classically of higher order",
        "b": {str(i): str(w) for i, w in weights.items()},
    }


def _warmup(name: str, entry: dict[str, Any], steps: int) -> dict[str, list[str]]:
    """The starters of a multistep entry, checked against the plan: k - 1 names each, the j-th
    a single-step method or a multistep method of at most j steps."""
    entries = plan_entries()
    warmup = {}
    for key, field in (("lower_order", "warmup"), ("order_preserving", "warmup_order_preserving")):
        if field == "warmup_order_preserving" and field not in entry and "noise" in entry:
            continue  # stochastic Adams methods: no order-preserving stochastic starters yet
        names = list(entry.get(field, []))
        if len(names) != steps - 1:
            raise InputError(
                f"registry plan entry {name!r}: {field!r} must name {steps - 1} starter(s)"
            )
        for position, starter in enumerate(names, start=1):
            spec = entries.get(starter)
            if spec is None:
                raise InputError(f"registry plan entry {name!r}: unknown starter {starter!r}")
            starter_steps = (
                spec["order"]
                if spec.get("derive") == "multistep"
                else published_multistep(spec["published_multistep"]).steps
                if "published_multistep" in spec
                else 1
            )
            if starter_steps > position:
                raise InputError(
                    f"registry plan entry {name!r}: starter {position} ({starter!r}) needs "
                    f"{starter_steps} values, only {position} are available"
                )
        warmup[key] = names
    return warmup


def derive_multistep_record(
    name: str,
    order: int,
    *,
    prediction: str | None = None,
    description: str = "",
    corrector: bool = False,
    warmup: dict[str, list[str]] | None = None,
    noise: str | None = None,
) -> Record:
    """The record of the exponential Adams method with ``order`` values, or with ``corrector``
    of its PEC pair (exponential Adams-Moulton on the same values and the new one, order + 1),
    or with ``noise = "eta"`` the stochastic exponential Adams method of the eta-dynamics (the
    drift in mu = (1 + eta) lam, the exact noise of every step, :func:`eta_noise_variances`)."""
    check_method_name(name, "name")
    method = exponential_adams(order, name, prediction=prediction, description=description)
    construction = (
        "exponential Adams: exact integration of the Lagrange interpolant of the last k values "
        "(variable steps)"
    )
    orders: dict[str, int] = {"order": order}
    if corrector:
        construction += (
            "; PEC corrector: exact integration of the interpolant of the new value and the "
            "last k (exponential Adams-Moulton)"
        )
        orders = {"predictor_order": order, "pair_order": order + 1}
    variances = None
    if noise is not None:
        if noise != "eta" or corrector:
            raise InputError(
                f"registry plan entry {name!r}: 'noise' must be \"eta\" (the eta-dynamics' exact "
                "noise), on a method without corrector"
            )
        construction += (
            "; the eta-dynamics: drift in mu = (1 + eta) lam, the exact noise of every step "
            "(Ito isometry of the variation-of-constants integral)"
        )
        variances = {
            "dynamics": "eta",
            "variance": {form: str(v) for form, v in eta_noise_variances().items()},
        }
    return multistep_record(
        method,
        {"kind": "derived", "family": "multistep", **orders, "construction": construction},
        warmup=warmup,
        corrector=exponential_adams_moulton(order) if corrector else None,
        noise=variances,
    )


def build_record(name: str, entry: dict[str, Any]) -> Record:
    description = entry.get("description")
    if "stochastic" in entry:
        from phiforge.derive.stochastic import stochastic_record

        return stochastic_record(entry["stochastic"])
    if "published" in entry:
        method = catalogue_method(entry["published"])
        if description:
            method = dataclasses.replace(method, description=description)
        return singlestep_record(
            method,
            {"kind": "published", "citation": method.source, "catalogue": entry["published"]},
            embedded=embedded_companion(method, entry.get("embedded")),
        )
    if "published_multistep" in entry:
        method = published_multistep(entry["published_multistep"])
        return multistep_record(
            method,
            {"kind": "published", "citation": method.source},
            warmup=_warmup(name, entry, method.steps),
        )
    if entry.get("derive") == "multistep":
        corrected = entry.get("corrector", False)
        if not isinstance(corrected, bool):
            raise InputError(f"registry plan entry {name!r}: 'corrector' must be true or false")
        return derive_multistep_record(
            name,
            entry["order"],
            prediction=entry.get("prediction"),
            description=description or "",
            corrector=corrected,
            warmup=_warmup(name, entry, entry["order"]),
            noise=entry.get("noise"),
        )
    if entry.get("derive") == "singlestep":
        return derive_singlestep_record(
            name,
            entry["stages"],
            entry["order"],
            nodes=[sympy.nsimplify(x) for x in entry["nodes"]] if "nodes" in entry else None,
            node_grid=entry.get("node_grid"),
            assumptions=entry.get("assumptions", "none"),
            prediction=entry.get("prediction"),
            description=description or "",
            embedded=entry.get("embedded"),
            form=entry.get("form", "expanded"),
            fix=entry.get("fix"),
            series=entry.get("series"),
        )
    raise InputError(
        f"registry plan entry {name!r}: say 'published', 'published_multistep', 'stochastic' or "
        "'derive' (singlestep or multistep)"
    )


def checked_nodes(values: Any, parameter: str) -> list[sympy.Rational]:
    """Nodes as exact rationals in [0, 1] (strings such as '1/3' or numbers): a node outside
    would evaluate the model outside the step (c > 1: beyond its end, c < 0: before its
    start)."""
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise InputError(f"parameter {parameter!r} must be a list of nodes, got {values!r}")
    checked = []
    for value in values:
        try:
            number = sympy.nsimplify(value)
        except (TypeError, ValueError, sympy.SympifyError):
            number = None
        if number is None or not number.is_Rational or not 0 <= number <= 1:
            raise InputError(
                f"parameter {parameter!r}: every node must be a rational number in [0, 1] "
                f"(e.g. 1/3), got {value!r}"
            )
        checked.append(sympy.Rational(number))
    return checked


def build_registry(directory: Path, names: list[str] | None = None) -> list[Path]:
    """Re-derive the plan's records (all, or ``names``) and write them into ``directory``."""
    entries = plan_entries()
    selected = names or list(entries)
    unknown = [n for n in selected if n not in entries]
    if unknown:
        raise InputError(f"unknown plan entries {unknown}; the plan lists {list(entries)}")
    return [save_record(build_record(name, entries[name]), directory) for name in selected]
