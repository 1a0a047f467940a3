"""The registry of verified methods: one JSON record per method in ``derive/registry/``.

A record holds the exact coefficients (SymPy-parsable strings in ``phi(k, c*z)``), the verdict of
every order condition and the orders in both settings as computed by the checker when the record
was written, the NFE per step, the provenance (published with citation, or derived with its
parameters) and a content hash: the SHA-256 of the record's canonical JSON without the ``hash``
field. A record whose hash does not match its content was edited by hand and is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sympy

from phiforge.derive.check import check_tableau
from phiforge.derive.errors import InputError
from phiforge.derive.multistep import MultistepMethod, check_multistep, step_ratios
from phiforge.derive.phi import phi
from phiforge.derive.program_check import ProgramTableau
from phiforge.derive.records import (
    FORMAT_VERSION,
    MultistepRecord,
    Record,
    SingleStepRecord,
    content_hash,
    read_record,
    typed_record,
)
from phiforge.derive.registry_folders import (
    RegistryArg,
    check_method_name,
    default_registry_dir,
    find_record,
)
from phiforge.derive.straightline import (
    Definition,
    StraightLineMethod,
    compose,
    expansions,
)
from phiforge.derive.tableau import ExpRKTableau, Z

__all__ = [
    "FORMAT_VERSION",
    "checked_method_from_record",
    "composed_definitions",
    "content_hash",
    "corrector_from_record",
    "default_registry_dir",
    "list_records",
    "load_record",
    "load_registered",
    "multistep_from_record",
    "multistep_record",
    "program_from_record",
    "save_record",
    "singlestep_record",
    "tableau_from_record",
]


def _orders(report) -> dict[str, int]:
    return {
        "stiff": report.stiff_order,
        "weak_stiff": report.weak_stiff_order,
        "nonstiff": report.nonstiff_order,
        "classical": report.classical_order,
        "max_checked": report.max_order,
    }


def singlestep_record(
    method: ExpRKTableau,
    provenance: Mapping[str, Any],
    max_order: int = 6,
    embedded: Mapping[str, Any] | None = None,
    program: StraightLineMethod | None = None,
) -> SingleStepRecord:
    """The record of a single-step method, with verdicts computed now in both settings.

    ``embedded`` ({"order", "b", "stiff_order"}) is an embedded companion on the same stages
    (error estimates for adaptive steps). With ``program`` (a straight-line construction whose
    tableau is ``method``) the record stores its definitions, the coefficients as their names
    (a_i1 included) and the domain of z where the pivots do not vanish."""
    if method.free_symbols:
        raise InputError(
            f"{method.name}: registry records need numeric nodes and coefficients; free "
            f"parameters {sorted(str(s) for s in method.free_symbols)} must be fixed first"
        )
    orders, conditions = {}, {}
    for setting in ("scalar", "operator"):
        report = check_tableau(method, max_order, setting)
        orders[setting] = _orders(report)
        conditions[setting] = [
            {"number": r.number, "tree": r.tree.ascii, "order": r.order, "verdict": r.verdict.value}
            for r in report.results
        ]
    s = method.stages
    if program is not None:
        coefficients = _program_coefficients(method, program)
    else:
        coefficients = {
            "a": {
                f"{i},{j}": str(method.a_entry(i, j)) for i in range(2, s + 1) for j in range(1, i)
            },
            "b": {str(i): str(method.b_entry(i)) for i in range(1, s + 1)},
        }
    record = {
        "format": FORMAT_VERSION,
        "name": method.name,
        "family": "singlestep",
        "description": method.description,
        "prediction": method.prediction,
        "stages": s,
        "nfe_per_step": s,
        "nodes": [str(x) for x in method.c],
        "coefficients": coefficients,
        "orders": orders,
        "convergence_order": orders["scalar"]["nonstiff"],
        "conditions": conditions,
        "provenance": dict(provenance),
    }
    if embedded:
        record["embedded"] = dict(embedded)
    if program is not None:
        record["definitions"] = [_definition_entry(d) for d in program.definitions]
        record["domain"] = program.domain
    return SingleStepRecord(record).sealed()


def _definition_entry(definition: Definition) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": definition.name, "expr": str(definition.expr)}
    if definition.series:
        entry["series"] = [[str(e.center), str(e.radius), e.degree] for e in definition.series]
    return entry


def _program_coefficients(method: ExpRKTableau, program: StraightLineMethod) -> dict[str, Any]:
    s = method.stages
    a: dict[str, str] = {}
    for i in range(2, s + 1):
        if (i, 1) not in program.a_names:
            raise InputError(f"{method.name}: the program must define a_{i}1 (first column)")
        for j in range(1, i):
            a[f"{i},{j}"] = program.a_names.get((i, j), "0")
    b = {str(i): program.b_names.get(i, "0") for i in range(1, s + 1)}
    return {"a": a, "b": b}


def program_from_record(record: Mapping[str, Any]) -> tuple[Definition, ...]:
    """The straight-line definitions of a single-step record (empty for an ordinary one)."""
    record = typed_record(record)
    if not isinstance(record, SingleStepRecord):
        raise InputError(f"{record.name}: not a single-step record")
    definitions = []
    for entry in record.definitions:
        local = {d.name: sympy.Symbol(d.name) for d in definitions}
        series = expansions(entry["series"]) if "series" in entry else ()
        definitions.append(Definition(entry["name"], _parse(entry["expr"], local), series))
    return tuple(definitions)


def _quadrature_conditions(report) -> list[dict[str, Any]]:
    return [
        {"order": q + 1, "verdict": verdict, "residual": str(residual), "leading_term": str(lead)}
        for q, (verdict, residual, lead) in enumerate(
            zip(report.verdicts, report.residuals, report.leading_terms, strict=True)
        )
    ]


def multistep_record(
    method: MultistepMethod,
    provenance: Mapping[str, Any],
    max_order: int | None = None,
    warmup: Mapping[str, list[str]] | None = None,
    corrector: MultistepMethod | None = None,
    noise: Mapping[str, Any] | None = None,
) -> MultistepRecord:
    """The record of an exponential Adams-type method (weights symbolic in the step ratios).

    ``noise`` (stochastic exponential Adams methods) holds the exact variances of the step's
    noise (``variance``: data and noise form, :func:`~phiforge.derive.multistep.
    eta_noise_variances`); the drift's weights are then read in mu = (1 + eta) lam.

    ``warmup`` names the starters for the first k - 1 steps (the j-th with j values at hand):
    ``lower_order`` (the published convention) and ``order_preserving``. ``corrector`` (an
    implicit formula on the same k past values and the new point) makes a PEC pair: its weights
    are ``coefficients.gamma`` (index 0 the new point, m + 1 the m-th past value), its verdicts
    ``conditions.corrector_quadrature``, and each order of the pair is min(corrector's,
    predictor's + 1) (``orders``; the predictor's alone under ``predictor_orders``).
    """
    top = max_order or method.steps + 2 + int(corrector is not None)
    report = check_multistep(method, top)
    orders = _orders(report)
    record = {
        "format": FORMAT_VERSION,
        "name": method.name,
        "family": "multistep",
        "description": method.description,
        "prediction": method.prediction,
        "steps": method.steps,
        "nfe_per_step": 1,
        "ratios": [str(r) for r in method.ratios],
        "coefficients": {"beta": {str(m): str(w) for m, w in enumerate(method.weights)}},
        "orders": {"scalar": orders, "operator": orders},
        "convergence_order": orders["nonstiff"],
        "conditions": {"quadrature": _quadrature_conditions(report)},
        "provenance": dict(provenance),
    }
    if corrector is not None:
        if not corrector.implicit or corrector.ratios != method.ratios:
            raise InputError(
                f"{method.name}: parameter 'corrector' must be an implicit formula on the "
                f"predictor's {method.steps} past values (ratios {method.ratios})"
            )
        corrector_report = check_multistep(corrector, top)
        corrector_orders = _orders(corrector_report)
        pair = {
            key: corrector_orders[key]
            if key == "max_checked"
            # the predictor's error enters the corrected state multiplied by h gamma_new
            else min(corrector_orders[key], orders[key] + 1)
            for key in orders
        }
        record["coefficients"]["gamma"] = {str(m): str(w) for m, w in enumerate(corrector.weights)}
        record["orders"] = {"scalar": pair, "operator": pair}
        record["predictor_orders"] = orders
        record["corrector_orders"] = corrector_orders
        record["convergence_order"] = pair["nonstiff"]
        record["conditions"]["corrector_quadrature"] = _quadrature_conditions(corrector_report)
    if warmup:
        record["warmup"] = {key: list(names) for key, names in warmup.items()}
    if noise is not None:
        record["noise"] = dict(noise)
    return MultistepRecord(record).sealed()


def save_record(record: Mapping[str, Any], directory: Path) -> Path:
    """Write ``record`` as ``directory/NAME.json`` (the folder is created if missing), after its
    family's record class has validated it (:meth:`~phiforge.derive.records.Record.save`)."""
    return typed_record(record).save(directory)


def load_record(name: str, directory: Path | None = None) -> Record:
    """Read and verify one record (:func:`~phiforge.derive.records.read_record`: hash, schema
    of its family, file name); unknown names list the registered ones."""
    check_method_name(name, "name")
    directory = Path(directory or default_registry_dir())
    path = directory / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.json"))) or "none"
        raise InputError(f"unknown registry method {name!r}; registered methods: {known}")
    return read_record(path)


def load_registered(name: str, registry: RegistryArg = None) -> Record:
    """The record of ``name`` from the package's registry or the user's folders
    (:mod:`phiforge.derive.registry_folders`)."""
    path = find_record(name, registry)
    return load_record(name, path.parent)


def list_records(directory: Path | None = None) -> list[Record]:
    directory = Path(directory or default_registry_dir())
    return [load_record(p.stem, directory) for p in sorted(directory.glob("*.json"))]


def _parse(text: str, local: Mapping[str, Any]) -> sympy.Expr:
    return sympy.sympify(text, locals={"phi": phi, "z": Z, "exp": sympy.exp, **local})


def tableau_from_record(record: Mapping[str, Any]) -> ExpRKTableau:
    """The single-step tableau of a record (validated again on construction)."""
    record = typed_record(record)
    if not isinstance(record, SingleStepRecord):
        raise InputError(f"{record.name}: not a single-step record")
    local = composed_definitions(record)
    a = {
        tuple(int(x) for x in key.split(",")): _parse(text, local)
        for key, text in record.coefficients["a"].items()
        if not (key.endswith(",1") and text in local)  # a program's a_i1: the row-sum identity
    }
    b = {int(i): _parse(text, local) for i, text in record.coefficients["b"].items()}
    return ExpRKTableau.from_coefficients(
        record.name,
        [_parse(x, {}) for x in record.nodes],
        a,
        b,
        description=record.description,
        prediction=record.prediction,
        source=str(record.provenance.get("citation", "")),
    )


def checked_method_from_record(record: Mapping[str, Any]) -> ExpRKTableau | ProgramTableau:
    """A single-step record as the checker reads it: a straight-line record's program run as it
    stands (:class:`~phiforge.derive.program_check.ProgramTableau`: composing res_6s's 143
    definitions into quotients would take hours), any other record's tableau."""
    record = typed_record(record)
    if not isinstance(record, SingleStepRecord):
        raise InputError(f"{record.name}: not a single-step record")
    if not record.definitions:
        return tableau_from_record(record)
    coefficients = record.coefficients
    return ProgramTableau(
        record.name,
        tuple(_parse(x, {}) for x in record.nodes),
        program_from_record(record),
        {
            tuple(int(x) for x in key.split(",")): text  # type: ignore[misc]
            for key, text in coefficients["a"].items()
            if text != "0"
        },
        {int(i): text for i, text in coefficients["b"].items() if text != "0"},
        description=record.description,
        prediction=record.prediction,
        source=str(record.provenance.get("citation", "")),
    )


def composed_definitions(record: Mapping[str, Any]) -> dict[str, sympy.Expr]:
    """The exact value of every definition of a straight-line record (cached per record hash)."""
    record = typed_record(record)
    return dict(_composed(record.hash, program_from_record(record)))


@functools.lru_cache(maxsize=16)
def _composed(_hash: str | None, definitions: tuple[Definition, ...]) -> tuple:
    return tuple(compose(definitions).items()) if definitions else ()


def _multistep_weights(
    record: Record, key: str, count: int
) -> tuple[tuple[sympy.Expr, ...], tuple[sympy.Symbol, ...]]:
    """The weights ``coefficients[key]`` of a multistep record (``count`` of them), with the step
    ratio symbols they are written in."""
    if not isinstance(record, MultistepRecord):
        raise InputError(f"{record.name}: not a multistep record")
    ratios = step_ratios(record.steps)
    local = {str(r): r for r in ratios}
    table = record.coefficients[key]
    return tuple(_parse(table[str(m)], local) for m in range(count)), ratios


def multistep_from_record(record: Mapping[str, Any]) -> MultistepMethod:
    record = typed_record(record)
    weights, ratios = _multistep_weights(record, "beta", record.steps or 0)
    return MultistepMethod(
        name=record.name,
        weights=weights,
        ratios=ratios,
        description=record.description,
        prediction=record.prediction,
    )


def corrector_from_record(record: Mapping[str, Any]) -> MultistepMethod | None:
    """The corrector of a PEC multistep record (None for a plain multistep record)."""
    record = typed_record(record)
    if isinstance(record, MultistepRecord) and "gamma" not in record.coefficients:
        return None
    weights, ratios = _multistep_weights(record, "gamma", (record.steps or 0) + 1)
    return MultistepMethod(
        name=f"{record.name} corrector",
        weights=weights,
        ratios=ratios,
        implicit=True,
        prediction=record.prediction,
    )
