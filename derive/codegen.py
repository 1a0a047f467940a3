"""Code generation: one torch-ready Python module per registry record, from Jinja2 templates.

The coefficient functions are written from the record's exact expressions. A phi-linear
coefficient f(z) = sum q phi_k(c z) whose Taylor series starts at z^v (v > 0) is emitted as
z^v sum q c^v phi_{k+v}(c z), the same function without the cancellation of its constant terms
near z = 0 (from phi_k(x) = sum_{j<v} x^j/(k+j)! + x^v phi_{k+v}(x)). Each phi_k(c z) is read
from one ``phi_all_float(c z, k_max)`` call per distinct scale c. In a straight-line record
with domain z <= 0 the phi-linear definitions are emitted in psi_j(c z) = int_0^1 e^{s c z} s^j ds
instead (positive integrands: no cancellation where the combination decays like 1/z^2), and a
definition with Taylor expansions is read from them where their discs hold z. The output
depends only on the record, so regenerating reproduces the files byte for byte.
"""

from __future__ import annotations

import functools
import json
import textwrap
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import sympy
from sympy.printing.str import StrPrinter

from phiforge.derive.errors import InputError
from phiforge.derive.phi import as_psi, phi, psi
from phiforge.derive.phibasis import (
    SYMBOLIC,
    CoefficientFunction,
    coefficient_function,
    divide_out_z,
    taylor,
)
from phiforge.derive.records import (
    MultistepRecord,
    Record,
    SingleStepRecord,
    StochasticRecord,
    typed_record,
)
from phiforge.derive.registry import (
    corrector_from_record,
    default_registry_dir,
    list_records,
    multistep_from_record,
    program_from_record,
    tableau_from_record,
)
from phiforge.derive.straightline import COVERED_LOWEST, Definition, Expansion, taylor_about
from phiforge.derive.tableau import Z

__all__ = ["default_generated_dir", "generate", "name_free_form", "render_module"]

LINE = 100


def default_generated_dir() -> Path:
    return Path(str(resources.files("phiforge.generated")))


def _environment() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("phiforge.templates").joinpath(name).read_text("utf-8")
    )
    return jinja2.Environment(
        loader=loader,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )


def _scale_name(scale: sympy.Expr) -> str:
    scale = sympy.nsimplify(scale)
    if scale == 1:
        return "p1"
    if scale == -1:
        return "pm1"
    if scale.is_Rational:
        sign = "m" if scale.p < 0 else ""
        return f"p{sign}{abs(scale.p)}_{scale.q}"
    raise InputError(f"cannot name the phi scale {scale}")


def _scale_code(scale: sympy.Rational) -> str:
    if scale == 1:
        return "z"
    if scale == -1:
        return "-z"
    if scale.p == 1:
        return f"z / {scale.q}"
    return f"{scale.p} * z / {scale.q}"


class _CodePrinter(StrPrinter):
    """Python code: phi(k, c*z) -> p{c}[k]; rationals as float divisions."""

    def _print_phi(self, expr: phi) -> str:
        k, argument = expr.args
        return f"{_scale_name(argument / Z)}[{k}]"

    def _print_psi(self, expr: psi) -> str:
        j, argument = expr.args
        return f"q{_scale_name(argument / Z)[1:]}[{j}]"

    def _print_Rational(self, expr: sympy.Rational) -> str:
        return f"{expr.p}/{expr.q}"

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return str(expr)


def _code(expr: sympy.Expr) -> str:
    return _CodePrinter({"order": "none"}).doprint(expr)


class _PreciseCodePrinter(StrPrinter):
    """Python code in the arithmetic of z (mpmath numbers): phi(k, c*z) calls, rationals as
    mpf(p)/q (never a float division of two integers)."""

    def _print_phi(self, expr: phi) -> str:
        k, argument = expr.args
        return f"phi({k}, {self._print(argument)})"

    def _print_Rational(self, expr: sympy.Rational) -> str:
        return f"mpf({expr.p})/{expr.q}"

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return str(expr)


def _precise_code(expr: sympy.Expr) -> str:
    return _PreciseCodePrinter({"order": "none"}).doprint(expr)


def _cancellation_free(expr: sympy.Expr) -> sympy.Expr:
    """z^v sum q c^v phi_{k+v}(c z) for a phi-linear expr with Taylor valuation v."""
    function: CoefficientFunction = coefficient_function(expr, Z, SYMBOLIC, "coefficient")
    if not function.is_linear or expr == 0:
        return expr
    combination = function.as_combination()
    series = taylor(combination, 12)
    v = next((m for m, value in enumerate(series) if sympy.simplify(value) != 0), 0)
    if v == 0:
        return expr
    inner = sympy.Add(
        *[q * c**v * phi(k + v, c * Z) for (k, c), q in combination.items() if c != 0]
    )
    return sympy.Mul(Z**v, inner, evaluate=False)


def _cancellation_free_polynomial(expr: sympy.Expr) -> sympy.Expr:
    """z^v g for a polynomial in phi functions with Taylor valuation v (see divide_out_z)."""
    v, inner = divide_out_z(expr, Z)
    return expr if v == 0 else sympy.Mul(Z**v, inner, evaluate=False)


def _assign(name: str, expr: sympy.Expr, code: Any = _code) -> list[str]:
    text = code(expr)
    line = f"{name} = {text}"
    if len(line) + 4 <= LINE:
        return [line]
    terms = sympy.Add.make_args(expr) if not isinstance(expr, sympy.Mul) else [expr]
    if len(terms) == 1:
        return [
            f"{name} = (",
            *textwrap.wrap(
                text,
                LINE - 8,
                initial_indent="    ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            ),
            ")",
        ]
    lines = [f"{name} = ("]
    for index, term in enumerate(terms):
        rendered = code(term)
        if index and rendered.startswith("-"):
            text = f"- {rendered[1:]}"
        else:
            text = f"{'+ ' if index else ''}{rendered}"
        lines.extend(
            textwrap.wrap(
                text,
                LINE - 8,
                initial_indent="    ",
                subsequent_indent="        ",
                break_on_hyphens=False,
            )
        )
    lines.append(")")
    return lines


def _phi_lines(expressions: list[sympy.Expr]) -> list[str]:
    """One ``phi_all_float`` (and ``psi_all_float``) call per scale c of the phi_k(c z)
    (psi_j(c z)) in the expressions."""
    lines = []
    for function, call, prefix in ((phi, "phi_all_float", "p"), (psi, "psi_all_float", "q")):
        needed: dict[sympy.Expr, int] = {}
        for expr in expressions:
            for atom in sympy.sympify(expr).atoms(function):
                k, argument = atom.args
                scale = sympy.nsimplify(argument / Z)
                needed[scale] = max(needed.get(scale, 0), int(k))
        for scale in sorted(needed, key=lambda s: (s != 1, float(s))):
            name = prefix + _scale_name(scale)[1:]
            lines.append(f"{name} = {call}({_scale_code(scale)}, {needed[scale]})")
    return lines


def _psi_form(form: sympy.Expr) -> sympy.Expr:
    """A cancellation-free phi-linear form z^v f (or f) with f rewritten in psi_j(c z) (z <= 0:
    positive integrands; see phiforge.runtime.phi.psi_all_float)."""
    if isinstance(form, sympy.Mul) and form.args[0].has(Z) and not form.args[0].has(phi):
        power, inner = form.args[0], sympy.Mul(*form.args[1:])
        return sympy.Mul(power, as_psi(inner, Z), evaluate=False)
    return as_psi(form, Z)


def name_free_form(expr: sympy.Expr, domain: str | None) -> sympy.Expr:
    """A definition free of names, emitted without cancellation: phi-linear ones as
    :func:`_cancellation_free` (in psi_j(c z) on z <= 0, :func:`_psi_form`); products of phi
    values (the named elimination meets them from order 6 on) as z^v g
    (:func:`_cancellation_free_polynomial`), each phi_k(c z) then from phi_all_float."""
    function: CoefficientFunction = coefficient_function(expr, Z, SYMBOLIC, "coefficient")
    if not function.is_linear:
        return _cancellation_free_polynomial(expr)
    form = _cancellation_free(expr)
    return _psi_form(form) if domain == "z <= 0" else form


def _exact_lines(pairs: list[tuple[str, sympy.Expr]]) -> list[str]:
    lines = []
    for label, expr in pairs:
        text = f"{label} = {expr}"
        lines.extend(
            textwrap.wrap(text, LINE - 12, subsequent_indent="    ", break_on_hyphens=False)
        )
    return lines


def _provenance_lines(record: Record) -> list[str]:
    provenance = record.provenance
    kind = provenance.get("kind", "unknown")
    if kind == "published":
        text = f"Published: {provenance.get('citation', '')}"
    else:
        details = ", ".join(f"{k} {v}" for k, v in sorted(provenance.items()) if k != "kind")
        text = f"Derived by phiforge: {details}"
    return textwrap.wrap(text, LINE - 4, break_on_hyphens=False)


def _common(record: Record) -> dict[str, Any]:
    prediction = record.prediction
    return {
        "name": record.name,
        "hash": record.hash,
        "title": record.description or record.name,
        "prediction": "None" if prediction is None else f'"{prediction}"',
        "orders": record.orders,
        "orders_code": json.dumps(record.orders, indent=4, sort_keys=True),
        "convergence_order": record.convergence_order,
        "provenance_lines": _provenance_lines(record),
        "domain": _domain(record.domain),
    }


DOMAINS = ("z <= 0", "z >= 0")


def _domain(domain: str | None) -> str | None:
    """The domain of z where a method's coefficients are defined (None: every real z)."""
    if domain is not None and domain not in DOMAINS:
        raise InputError(
            f"record field 'domain' must be one of {DOMAINS} or absent, got {domain!r}"
        )
    return domain


class _Emitter:
    """Collects coefficient assignments; shared denominators of rational coefficients become
    one named variable each (d1, d2, ...)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.emitted: list[sympy.Expr] = []
        self.denominators: dict[sympy.Expr, str] = {}

    def assign(self, name: str, expr: sympy.Expr) -> None:
        numerator, denominator = sympy.fraction(sympy.together(expr))
        if denominator.has(Z):
            denominator = sympy.expand(denominator)
            if denominator not in self.denominators:
                label = f"d{len(self.denominators) + 1}"
                self.denominators[denominator] = label
                self.emitted.append(denominator)
                self.lines.extend(_assign(label, denominator))
            numerator = _cancellation_free_polynomial(sympy.expand(numerator))
            self.emitted.append(numerator)
            self.lines.extend(_assign(name, numerator))
            self.lines.append(f"{name} = {name} / {self.denominators[denominator]}")
            return
        form = _cancellation_free(expr)
        self.emitted.append(form)
        self.lines.extend(_assign(name, form))


def _series_constant(
    name: str,
    definitions: tuple[Definition, ...],
    definition: Definition,
    expansion: Expansion,
) -> list[str]:
    """A definition's Taylor coefficients about the expansion's center, highest degree first,
    as float64 (:func:`~phiforge.derive.straightline.taylor_about`: the program's power
    series about the center at 120 digits)."""
    series = taylor_about(definitions, definition.name, expansion)
    lines = [f"{name} = (  # about z = {expansion.center}, degree {expansion.degree}"]
    lines.extend(f"    {q!r}," for q in reversed(series))
    return [*lines, ")"]


def _program_lines(
    record: SingleStepRecord, definitions: tuple[Definition, ...]
) -> tuple[list, list, list, list]:
    """Code for a straight-line record: each definition in order, phi-linear ones without the
    cancellation of their constant terms (in psi_j(c z) for z <= 0); a definition with
    expansions is taken from the first Taylor polynomial (Horner) whose disc holds z, and from
    its formula elsewhere."""
    exact, lines, emitted, constants = [], [], [], []
    for definition in definitions:
        expr = definition.expr
        exact.append((definition.name, expr))
        names = {str(x) for x in expr.free_symbols} - {"z"}
        form = expr if names else name_free_form(expr, record.domain)
        emitted.append(form)
        if not definition.series:
            lines.extend(_assign(definition.name, form))
            continue
        for index, expansion in enumerate(definition.series):
            constant = f"{definition.name.upper()}_SERIES_{index}"
            constants.extend(_series_constant(constant, definitions, definition, expansion))
            center, radius = float(expansion.center), float(expansion.radius)
            offset = "z" if center == 0 else f"z + {-center!r}"
            shifted = offset if center == 0 else f"({offset})"
            test = f"abs({offset}) < {radius!r}"
            note = (
                "removable singularity at z = 0" if center == 0 else "cancellation in the formula"
            )
            lines.append(f"{'if' if index == 0 else 'elif'} {test}:  # Taylor series: {note}")
            lines.append(f"    {definition.name} = 0.0")
            lines.append(f"    for coefficient in {constant}:")
            lines.append(f"        {definition.name} = {definition.name} * {shifted} + coefficient")
        lines.append("else:")
        lines.extend(f"    {line}" for line in _assign(definition.name, form))
    return exact, lines, emitted, constants


def _singlestep_context(record: SingleStepRecord) -> dict[str, Any]:
    if record.definitions:
        return _straightline_context(record)
    method = tableau_from_record(record)
    s = method.stages
    exact = []
    emitter = _Emitter()
    a_rows = []
    for i in range(1, s + 1):
        names = {}
        for j in range(1, i):
            entry = method.a_entry(i, j)
            name = f"a{i}{j}" if s < 10 else f"a{i}_{j}"
            if entry == 0:
                names[j] = "0.0"
                continue
            names[j] = name
            if j == 1 and not method.sparse_row_linear(i):
                continue  # emitted below from the row sum
            exact.append((f"a[{i}][{j}]", entry))
            emitter.assign(name, entry)
        if i > 1 and not method.sparse_row_linear(i) and names[1] != "0.0":
            c_i = method.c[i - 1]
            others = " + ".join(f"a[{i}][{j}]" for j in range(2, i))
            exact.append((f"a[{i}][1]", sympy.Symbol(f"{c_i * phi(1, c_i * Z)} - ({others})")))
            rest = [names[j] for j in range(2, i) if names[j] != "0.0"]
            emitter.emitted.append(phi(1, c_i * Z))
            emitter.lines.append(
                f"{names[1]} = {_code(c_i * phi(1, c_i * Z))} - " + " - ".join(rest)
            )
        a_rows.append("".join(f"{names[j]}, " for j in range(1, i)).rstrip())
    b_names = []
    for i in range(1, s + 1):
        entry = method.b_entry(i)
        if entry == 0:
            b_names.append("0.0")
            continue
        exact.append((f"b[{i}]", entry))
        emitter.assign(f"b{i}", entry)
        b_names.append(f"b{i}")
    return _tableau_module_context(
        record,
        method.c,
        exact,
        emitter.emitted,
        emitter.lines,
        a_rows,
        b_names,
        embedded=_embedded_context(record, s),
    )


def _tableau_module_context(
    record: SingleStepRecord,
    nodes: Any,
    exact: list,
    emitted: list[sympy.Expr],
    lines: list[str],
    a_rows: list[str],
    b_names: list[str],
    constants: list[str] | None = None,
    embedded: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The template context of a single-step module from its coefficient code (shared by the
    tableau and the straight-line records)."""
    s = len(b_names)
    nodes = [sympy.nsimplify(x) for x in nodes]
    return _common(record) | {
        "stages": s,
        "nfe": record.nfe_per_step,
        "nodes_text": ", ".join(str(x) for x in nodes),
        "nodes_code": ", ".join(_code(x) if x != 0 else "0.0" for x in nodes)
        + ("," if s == 1 else ""),
        "exact_lines": _exact_lines(exact),
        "phi_lines": _phi_lines(emitted),
        "coefficient_lines": lines,
        "series_constants": constants or [],
        "a_rows": a_rows,
        "b_row": ", ".join(b_names) + ("," if s == 1 else ""),
        "embedded": embedded,
        "exact_header": "Exact expressions (phi(k, x) is phi_k(x)):",
        "precise_lines": [],  # a straight-line record's exact program (its context sets them)
        "float64_down_to": None,
        "phi_imports": ", ".join(
            name
            for name, function in (("phi_all_float", phi), ("psi_all_float", psi))
            if any(sympy.sympify(e).has(function) for e in emitted)
        ),
    }


def _straightline_context(record: SingleStepRecord) -> dict[str, Any]:
    """A straight-line record names a definition for every coefficient (a_i1 included), so the
    module is written from the program alone (no composed quotients)."""
    s = record.stages
    definitions = program_from_record(record)
    exact, lines, emitted, constants = _program_lines(record, definitions)
    defined = {d.name for d in definitions}
    a_rows = []
    for i in range(1, s + 1):
        names = []
        for j in range(1, i):
            text = record.coefficients["a"][f"{i},{j}"]
            if text not in defined and text != "0":
                raise InputError(
                    f"{record.name}: coefficient a_{i}{j} = {text!r} must be 0 or the name of "
                    "a definition of the program"
                )
            names.append("0.0" if text == "0" else text)
            exact.append((f"a[{i}][{j}]", sympy.Symbol(text)))
        a_rows.append("".join(f"{n}, " for n in names).rstrip())
    b_names = [record.coefficients["b"][str(i)] for i in range(1, s + 1)]
    exact.extend((f"b[{i}]", sympy.Symbol(n)) for i, n in enumerate(b_names, start=1) if n != "0")
    b_names = ["0.0" if n == "0" else n for n in b_names]
    precise = [line for d in definitions for line in _assign(d.name, d.expr, _precise_code)]
    named = [(key, value) for key, value in exact if key.startswith(("a[", "b["))]
    return _tableau_module_context(
        record, record.nodes, named, emitted, lines, a_rows, b_names, constants
    ) | {
        "precise_lines": precise,
        "float64_down_to": repr(float(COVERED_LOWEST)),
        "exact_header": "Exact expressions: the definitions of _exact_program (below), named here:",
    }


def _embedded_context(record: SingleStepRecord, s: int) -> dict[str, Any] | None:
    embedded = record.embedded
    if not embedded:
        return None
    emitter = _Emitter()
    exact, names = [], []
    for i in range(1, s + 1):
        entry = sympy.sympify(embedded["b"][str(i)], locals={"phi": phi, "z": Z})
        if entry == 0:
            names.append("0.0")
            continue
        exact.append((f"b^[{i}]", entry))
        emitter.assign(f"bh{i}", entry)
        names.append(f"bh{i}")
    return {
        "order": embedded["order"],
        "exact_lines": _exact_lines(exact),
        "phi_lines": _phi_lines(emitter.emitted),
        "coefficient_lines": emitter.lines,
        "b_row": ", ".join(names) + ("," if s == 1 else ""),
    }


def _weight_lines(symbol: str, weights: tuple[sympy.Expr, ...]) -> dict[str, Any]:
    """Exact docstring lines, phi calls, float assignments and the returned row of one set of
    multistep weights (``symbol``: beta for the predictor, gamma for the corrector)."""
    exact, lines, names = [], [], []
    for m, weight in enumerate(weights):
        exact.append((f"{symbol}[{m}]", weight))
        lines.extend(_assign(f"{symbol}{m}", weight))
        names.append(f"{symbol}{m}")
    return {
        "exact_lines": _exact_lines(exact),
        "phi_lines": _phi_lines(list(weights)),
        "coefficient_lines": lines,
        "row": ", ".join(names) + ("," if len(names) == 1 else ""),
    }


def _multistep_context(record: MultistepRecord) -> dict[str, Any]:
    method = multistep_from_record(record)
    predictor = _weight_lines("beta", method.weights)
    context = _common(record) | {
        "steps": method.steps,
        "exact_lines": predictor["exact_lines"],
        "ratio_lines": [f"{r} = ratios[{index}]" for index, r in enumerate(method.ratios)],
        "phi_lines": predictor["phi_lines"],
        "coefficient_lines": predictor["coefficient_lines"],
        "beta_row": predictor["row"],
        "warmup": record.warmup,
        "corrected": False,
        "noise": _noise_context(record.noise),
    }
    corrector = corrector_from_record(record)
    if corrector is not None:
        lines = _weight_lines("gamma", corrector.weights)
        context |= {
            "corrected": True,
            "predictor_orders": record.predictor_orders,
            "corrector_orders": record.corrector_orders,
            "corrector_exact_lines": lines["exact_lines"],
            "corrector_phi_lines": lines["phi_lines"],
            "corrector_coefficient_lines": lines["coefficient_lines"],
            "gamma_row": lines["row"],
        }
    return context


def _noise_context(noise: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The exact noise variances of a stochastic Adams record, as text and as code."""
    if noise is None:
        return None
    from sympy.codegen.cfunctions import expm1

    local = {
        "h": sympy.Symbol("h", positive=True),
        "eta": sympy.Symbol("eta", positive=True),
        "expm1": expm1,
    }
    variances = {
        form: sympy.sympify(text, locals=local) for form, text in noise["variance"].items()
    }
    return {
        "data_exact": str(variances["data"]),
        "noise_exact": str(variances["noise"]),
        "data_code": _pycode(variances["data"]),
        "noise_code": _pycode(variances["noise"]),
    }


def _pycode(expr: sympy.Expr) -> str:
    return sympy.pycode(expr, fully_qualified_modules=True)


def _stochastic_context(record: StochasticRecord) -> dict[str, Any]:
    """Drift and noise code with the nodes as keyword parameters (defaults from the record)."""
    from sympy.codegen.cfunctions import expm1

    params = {k: sympy.Symbol(k, positive=True) for k in record.parameters}
    h, eta = sympy.Symbol("h", positive=True), sympy.Symbol("eta", nonnegative=True)
    local = {"phi": phi, "z": Z, "h": h, "eta": eta, "expm1": expm1, **params}

    def parse(text: str) -> sympy.Expr:
        return sympy.sympify(text, locals=local)

    s = record.stages
    nodes = [parse(x) for x in record.nodes]
    noisy = [parse(x) for x in record.noise["nodes"]]
    a = {key: parse(v) for key, v in record.coefficients["a"].items()}
    b = {int(i): parse(v) for i, v in record.coefficients["b"].items()}
    exact, named = [], []
    for i in range(2, s + 1):
        for j in range(1, i):
            if a[f"{i},{j}"] != 0:
                exact.append((f"a[{i}][{j}]", a[f"{i},{j}"]))
                named.append((f"a{i}{j}", a[f"{i},{j}"]))
    for i in range(1, s + 1):
        if b[i] != 0:
            exact.append((f"b[{i}]", b[i]))
            named.append((f"b{i}", b[i]))
    arguments: dict[sympy.Expr, int] = {}
    for _, expr in named:
        for atom in expr.atoms(phi):
            k, argument = int(atom.args[0]), atom.args[1]
            arguments[argument] = max(arguments.get(argument, 0), k)
    labels = {arg: f"ph{n}" for n, arg in enumerate(sorted(arguments, key=str), start=1)}
    lines = [
        f"{labels[arg]} = phi_all_float({_pycode(arg)}, {k})"
        for arg, k in sorted(arguments.items(), key=lambda item: labels[item[0]])
    ]
    for name, expr in named:
        code = expr.replace(
            lambda e: isinstance(e, phi),
            lambda e: sympy.Symbol(f"{labels[e.args[1]]}[{int(e.args[0])}]"),
        )
        lines.append(f"{name} = {_pycode(code)}")
    a_rows = []
    for i in range(1, s + 1):
        cells = [f"a{i}{j}" if a[f"{i},{j}"] != 0 else "0.0" for j in range(1, i)]
        a_rows.append("".join(f"{cell}, " for cell in cells).rstrip())
    b_row = ", ".join(f"b{i}" if b[i] != 0 else "0.0" for i in range(1, s + 1))

    def weight_rows(form: str) -> list[str]:
        weights = record.noise[form]["weights"]
        rows = []
        for k in range(1, len(noisy) + 1):
            cells = [_pycode(parse(weights[f"{k},{j}"])) for j in range(1, k + 1)]
            rows.append("(" + ", ".join(cells) + ("," if k == 1 else "") + "),")
        return rows

    defaults = {k: sympy.nsimplify(v) for k, v in record.parameters.items()}
    signature = ", ".join(f"{k}: float = {_code(v)}" for k, v in defaults.items())
    return _common(record) | {
        "stages": s,
        "nfe": record.nfe_per_step,
        "nodes_text": ", ".join(str(x) for x in nodes),
        "parameters": bool(defaults),
        "parameters_text": ", ".join(f"{k} = {v}" for k, v in defaults.items()),
        "parameters_code": "{" + ", ".join(f'"{k}": {_code(v)}' for k, v in defaults.items()) + "}",
        "signature": signature,
        "signature_tail": (", " + signature) if signature else "",
        "call_args": ", ".join(f"{k}={k}" for k in defaults),
        "call_tail": "".join(f", {k}={k}" for k in defaults),
        "nodes_code": ", ".join(_pycode(x) if x != 0 else "0.0" for x in nodes)
        + ("," if s == 1 else ""),
        "noisy_code": ", ".join(_pycode(x) for x in noisy) + ("," if len(noisy) == 1 else ""),
        "exact_lines": _exact_lines(exact),
        "coefficient_lines": lines,
        "a_rows": a_rows,
        "b_row": b_row + ("," if s == 1 else ""),
        "data_lines": ["return ("] + ["    " + row for row in weight_rows("data")] + [")"],
        "noise_lines": weight_rows("noise"),
    }


def render_module(record: Mapping[str, Any]) -> str:
    """The generated module of one record, as text (cached per process on the record's content
    and the template's text: rendering res_5s takes seconds, and ``generate`` renders every
    record)."""
    family = typed_record(record).family
    source = resources.files("phiforge.templates").joinpath(f"{family}.py.j2").read_text("utf-8")
    return _rendered(family, source, json.dumps(record, sort_keys=True))


@functools.lru_cache(maxsize=128)
def _rendered(family: str, source: str, record_text: str) -> str:
    record = typed_record(json.loads(record_text))
    context = {
        "singlestep": _singlestep_context,
        "multistep": _multistep_context,
        "stochastic": _stochastic_context,
    }[family](record)
    return _environment().from_string(source).render(**context)


def generate(
    registry: Path | None = None, out: Path | None = None, check: bool = False
) -> list[str]:
    """Write (or, with ``check``, compare) one module per record; returns the files that were
    written or that differ (missing, changed, or without a record). ``out`` defaults to the
    package's ``generated/`` only for ``check``: writing needs a folder named by the caller."""
    if out is None and not check:
        raise InputError("parameter 'out': name the folder the modules are written to")
    out = Path(out or default_generated_dir())
    records = list_records(registry or default_registry_dir())
    expected = {f"{r.name}.py": render_module(r) for r in records}
    differing = []
    for filename, text in expected.items():
        path = out / filename
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        differing.append(filename)
        if not check:
            path.write_text(text, encoding="utf-8")
    for path in sorted(out.glob("*.py")):
        if path.name != "__init__.py" and path.name not in expected:
            differing.append(path.name)
            if not check:
                path.unlink()
    return sorted(differing)
