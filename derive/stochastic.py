"""Stochastic exponential methods (SEEDS): exact stage-noise covariances and their factorisation.

For the eta-family of reverse dynamics (spec-seeds-restart.md §1.2; eta = 0 is the probability-
flow ODE, eta = 1 the reverse SDE) one step from lambda_s over h, in data prediction (DP) or noise
prediction (NP), is (spec §2.2)

    DP, y = x/alpha:  y_t = e^{-H} y_s + int_0^H e^{-(H-u)} D(lambda_s + u/(1+eta)) du + noise,
                      H = (1 + eta) h: the ODE step with phi at -H;
    NP, y = x/sigma:  y_t = e^{h} y_s - (1 + eta) int_0^h e^{h-tau} eps(lambda_s + tau) dtau
                      + noise,

so the drift is an exponential Runge-Kutta tableau (its stiff order conditions unchanged) and the
noise is Gaussian with exactly known law. With stage nodes 0 = c_0 < c_1 < ... < c_m = 1 (the
stage nodes after the first, then 1), sub-intervals of lengths Delta_j = c_j - c_{j-1}, and one
independent unit normal z_j per sub-interval, the noise in the state at node c_k is (§2.3)

    DP: N_k = sigma_(k) sum_{j<=k} e^{-eta (c_k - c_j) h} sqrt(1 - e^{-2 eta Delta_j h}) z_j,
    NP: N_k = sigma_(k) sum_{j<=k} sqrt(eta) e^{(c_k - c_j) h} sqrt(e^{2 Delta_j h} - 1) z_j,

and for k <= l  Cov(N_k, N_l)/(sigma_(k) sigma_(l)) = e^{-eta (c_l - c_k) h}(1 - e^{-2 eta c_k h})
(DP) or eta e^{(c_l - c_k) h}(e^{2 c_k h} - 1) (NP): the Ito isometry of the stochastic integrals
sqrt(2 eta) sigma_t int e^{-eta(lambda_t - lambda)} dB and sqrt(2 eta) alpha_t int e^{-lambda} dB.
:func:`stage_noise` returns both and proves W W^T = C symbolically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy
from sympy.codegen.cfunctions import expm1

from phiforge.derive.errors import InputError
from phiforge.derive.phi import phi
from phiforge.derive.records import FORMAT_VERSION, StochasticRecord
from phiforge.derive.tableau import ExpRKTableau, Z

__all__ = [
    "ETA",
    "H",
    "StageNoise",
    "StochasticMethod",
    "stage_noise",
    "stochastic_method",
    "stochastic_names",
]

H = sympy.Symbol("h", positive=True)
ETA = sympy.Symbol("eta", nonnegative=True)
FORMS = ("data", "noise")


@dataclass(frozen=True)
class StageNoise:
    """Noise of the m noisy nodes (stage nodes after the first, then 1) in units of sigma_(k)."""

    form: str
    nodes: tuple[sympy.Expr, ...]  # c_1 < ... < c_m = 1
    weights: tuple[tuple[sympy.Expr, ...], ...]  # w[k][j], j <= k (lower triangular)
    covariance: tuple[tuple[sympy.Expr, ...], ...]  # C[k][l]


def _no_expm1(expr: sympy.Expr) -> sympy.Expr:
    return expr.replace(lambda e: isinstance(e, expm1), lambda e: sympy.exp(e.args[0]) - 1)


def stage_noise(nodes: list[Any] | tuple[Any, ...], form: str = "data") -> StageNoise:
    """Weights and covariance of the stage noises for the nodes c_1 < ... < c_m = 1 (the final
    node 1 is appended when missing), verified: sum_j w_kj w_lj = C_kl as identities in h, eta
    and the (possibly symbolic) nodes."""
    if form not in FORMS:
        raise InputError(f"parameter 'form' must be one of {FORMS}, got {form!r}")
    if isinstance(nodes, str | bytes) or not isinstance(nodes, list | tuple):
        raise InputError(f"parameter 'nodes' must be a list of nodes in (0, 1], got {nodes!r}")
    c = [sympy.nsimplify(sympy.sympify(x)) for x in nodes]
    if not c or c[-1] != 1:
        c.append(sympy.Integer(1))
    for a, b in zip([sympy.Integer(0), *c[:-1]], c, strict=True):
        difference = sympy.simplify(b - a)
        if difference.is_number and not difference > 0:
            raise InputError(f"parameter 'nodes' must increase strictly in (0, 1], got {c}")
    delta = [c[0]] + [c[j] - c[j - 1] for j in range(1, len(c))]
    m = len(c)
    weights, covariance = [], []
    for k in range(m):
        row = []
        for j in range(k + 1):
            if form == "data":
                row.append(
                    sympy.exp(-ETA * (c[k] - c[j]) * H)
                    * sympy.sqrt(-expm1(-2 * ETA * delta[j] * H))
                )
            else:
                row.append(
                    sympy.sqrt(ETA)
                    * sympy.exp((c[k] - c[j]) * H)
                    * sympy.sqrt(expm1(2 * delta[j] * H))
                )
        weights.append(tuple(row))
    for k in range(m):
        row = []
        for ell in range(m):
            low, high = min(k, ell), max(k, ell)
            if form == "data":
                row.append(
                    sympy.exp(-ETA * (c[high] - c[low]) * H) * (-expm1(-2 * ETA * c[low] * H))
                )
            else:
                row.append(ETA * sympy.exp((c[high] - c[low]) * H) * expm1(2 * c[low] * H))
        covariance.append(tuple(row))
    for k in range(m):
        for ell in range(k + 1):
            product = sympy.Add(*[weights[k][j] * weights[ell][j] for j in range(ell + 1)])
            difference = _no_expm1(product - covariance[k][ell])
            if sympy.simplify(sympy.expand(sympy.powsimp(sympy.expand(difference)))) != 0:
                raise AssertionError(f"noise factorisation fails at ({k}, {ell})")
    return StageNoise(form, tuple(c), tuple(weights), tuple(covariance))


def _entries() -> dict[str, dict[str, Any]]:
    from phiforge.derive.catalogue import catalogue_entries

    return catalogue_entries("stochastic")


def stochastic_names() -> list[str]:
    return list(_entries())


@dataclass(frozen=True)
class StochasticMethod:
    """A drift tableau (nodes possibly symbolic) with default parameter values."""

    name: str
    title: str
    drift: ExpRKTableau
    defaults: dict[str, sympy.Expr]
    drift_name: str | None = None

    @property
    def parameters(self) -> list[str]:
        return sorted(self.defaults)

    def at_defaults(self) -> ExpRKTableau:
        return self.drift.subs({sympy.Symbol(k): v for k, v in self.defaults.items()})


def stochastic_method(name: str) -> StochasticMethod:
    """The SEEDS method ``name`` of the catalogue (``family = "stochastic"`` in
    ``catalogue.toml``; drift kept symbolic in its nodes)."""
    entries = _entries()
    if not isinstance(name, str) or name not in entries:
        raise InputError(f"unknown stochastic method {name!r}; known: {', '.join(entries)}")
    entry = entries[name]
    if "drift" in entry:
        from phiforge.derive.registry import load_record, tableau_from_record

        drift = tableau_from_record(load_record(entry["drift"]))
        return StochasticMethod(name, entry["title"], drift, {}, entry["drift"])
    local: dict[str, Any] = {"phi": phi, "z": Z}
    defaults = {k: sympy.nsimplify(v) for k, v in entry.get("defaults", {}).items()}
    for key in defaults:
        local[key] = sympy.Symbol(key, positive=True)
    nodes = [sympy.sympify(x, locals=local) for x in entry["nodes"]]
    a = {
        tuple(int(v) for v in key.split(",")): sympy.sympify(text, locals=local)
        for key, text in entry.get("a", {}).items()
    }
    b = {int(i): sympy.sympify(text, locals=local) for i, text in entry.get("b", {}).items()}
    drift = ExpRKTableau.from_coefficients(
        name, nodes, a, b, description=entry["title"], prediction="data"
    )
    return StochasticMethod(name, entry["title"], drift, defaults)


def seeds_citation(name: str) -> str:
    """The ``source`` of a published SEEDS entry of the catalogue."""
    return str(_entries()[name].get("source", ""))


def stochastic_record(name: str) -> StochasticRecord:
    """The registry record of a stochastic method: symbolic drift (checked at the default
    parameters), stage-noise weights and covariances in both forms, verified factorisation."""
    from phiforge.derive.check import check_tableau
    from phiforge.derive.registry import _orders

    method = stochastic_method(name)
    drift = method.drift
    s = drift.stages
    report = check_tableau(method.at_defaults(), 5, "scalar")
    noisy = list(drift.c[1:])
    noise = {}
    for form in FORMS:
        sn = stage_noise(noisy, form)
        noise[form] = {
            "weights": {
                f"{k + 1},{j + 1}": str(w)
                for k, row in enumerate(sn.weights)
                for j, w in enumerate(row)
            },
            "covariance": {
                f"{k + 1},{ell + 1}": str(v)
                for k, row in enumerate(sn.covariance)
                for ell, v in enumerate(row)
                if ell <= k
            },
        }
    noisy_nodes = stage_noise(noisy, "data").nodes
    record = {
        "format": FORMAT_VERSION,
        "name": name,
        "family": "stochastic",
        "description": method.title,
        "prediction": "data",
        "stages": s,
        "nfe_per_step": s,
        "nodes": [str(x) for x in drift.c],
        "parameters": {k: str(v) for k, v in sorted(method.defaults.items())},
        "coefficients": {
            "a": {
                f"{i},{j}": str(drift.a_entry(i, j)) for i in range(2, s + 1) for j in range(1, i)
            },
            "b": {str(i): str(drift.b_entry(i)) for i in range(1, s + 1)},
        },
        "noise": {"nodes": [str(x) for x in noisy_nodes], **noise},
        "orders": {"scalar": _orders(report)},
        "convergence_order": _orders(report)["nonstiff"],
        "provenance": (
            {
                "kind": "derived",
                "drift": method.drift_name,
                "construction": "registered drift with the exact SEEDS stage noises",
            }
            if method.drift_name
            else {"kind": "published", "citation": seeds_citation(name)}
        ),
    }
    return StochasticRecord(record).sealed()
