"""Benchmark: time to derive methods from the conditions, to check them, and to generate code.

Prints one row per derivation with its outcome, so the table doubles as a record of what the
construction finds. ``--slow`` adds the constructions that take minutes (res_5s through the
general path, as expanded quotients and as a straight-line program, Luan & Ostermann's 8-stage
method, Hochbruck & Ostermann's 5-stage method, scalar stiff order 6 with 9 and 10 stages).
Usage: python bench/construct.py [--slow] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import sympy
from sympy import Rational

from phiforge.derive.codegen import generate
from phiforge.derive.construct import (
    LUAN_EXPRK4S6,
    LUAN_OSTERMANN_EXPRK5S8,
    choose_nodes,
    construct_operator,
    construct_singlestep,
)
from phiforge.derive.multistep import (
    check_multistep,
    exponential_adams,
    exponential_adams_moulton,
)

c2, c3 = sympy.symbols("c2 c3", positive=True)

ORDER6_NODES = [Rational(1, 3), Rational(2, 3), *[Rational(k, 5) for k in range(1, 5)], 1]

CASES = [
    ("scalar 2 stages order 2, c2 free (RES-2S family)", lambda: construct_singlestep(2, 2, [c2])),
    (
        "scalar 3 stages order 3, c2, c3 free (spec §7.6 family)",
        lambda: construct_singlestep(3, 3, [c2, c3]),
    ),
    (
        "scalar 4 stages order 4, c = (1/3, 2/3, 1)",
        lambda: construct_singlestep(4, 4, [Rational(1, 3), Rational(2, 3), 1]),
    ),
    (
        "scalar 5 stages order 4, stage order 2, c = (1/4, 1/3, 1/2, 1)",
        lambda: construct_singlestep(
            5, 4, [Rational(1, 4), Rational(1, 3), Rational(1, 2), 1], assumptions="stage-order-2"
        ),
    ),
    (
        "scalar 5 stages order 4, stage order 2, c = (1/4, 1/3, 1/2, 1), as a program",
        lambda: construct_singlestep(
            5,
            4,
            [Rational(1, 4), Rational(1, 3), Rational(1, 2), 1],
            assumptions="stage-order-2",
            form="program",
        ),
    ),
    (
        "scalar 5 stages order 5, stage order 2, c = (1/4, 1/2, 3/4, 1)",
        lambda: construct_singlestep(
            5, 5, [Rational(1, 4), Rational(1, 2), Rational(3, 4), 1], assumptions="stage-order-2"
        ),
    ),
    (
        "scalar 5 stages order 4, no assumptions, c = (1/4, 1/2, 3/4, 1)",
        lambda: construct_singlestep(5, 4, [Rational(1, 4), Rational(1, 2), Rational(3, 4), 1]),
    ),
    (
        "scalar 6 stages order 4, no assumptions, c = (1/5, 2/5, 3/5, 4/5, 1)",
        lambda: construct_singlestep(6, 4, [Rational(k, 5) for k in range(1, 6)]),
    ),
    (
        "scalar 8 stages order 6, stage order 3, c = (1/3, 2/3, 1/5, 2/5, 3/5, 4/5, 1), as a "
        "program",
        lambda: construct_singlestep(
            8, 6, ORDER6_NODES, assumptions="stage-order-3", form="program"
        ),
    ),
    (
        "operator 3 stages weak order 3, c = (1/3, 2/3) (HO expRK3s3)",
        lambda: construct_operator(3, 3, [Rational(1, 3), Rational(2, 3)], weak_top=True),
    ),
    (
        "operator 4 stages order 3, c = (1/2, 1/2, 1)",
        lambda: construct_operator(4, 3, [Rational(1, 2), Rational(1, 2), 1]),
    ),
    (
        "scalar 6 stages order 5, stage order 2, c = (1/5, 1/3, 1/2, 2/3, 1)",
        lambda: construct_singlestep(
            6,
            5,
            [Rational(1, 5), Rational(1, 3), Rational(1, 2), Rational(2, 3), 1],
            assumptions="stage-order-2",
        ),
    ),
    (
        "operator 6 stages weak order 4, Luan's ansatz, c = (1/2, 1/2, 1/3, 5/6, 1/3)",
        lambda: construct_operator(
            6,
            4,
            [Rational(1, 2), Rational(1, 2), Rational(1, 3), Rational(5, 6), Rational(1, 3)],
            **LUAN_EXPRK4S6,
        ),
    ),
]


LO_NODES = [Rational(1, 2), Rational(1, 2), Rational(1, 4), Rational(1, 2), Rational(1, 5)]
LO_NODES += [Rational(2, 3), 1]

RES_5S_NODES = [Rational(1, 3), Rational(2, 3), Rational(1, 4), Rational(1, 2), Rational(3, 4), 1]

SLOW_CASES = [
    (
        "scalar 7 stages order 5, stage order 3, res_5s's c, as a program (checked on it)",
        lambda: construct_singlestep(
            7, 5, RES_5S_NODES, assumptions="stage-order-3", form="program"
        ),
    ),
    (
        "scalar 7 stages order 5, stage order 3, res_5s's c = (1/3, 2/3, 1/4, 1/2, 3/4, 1)",
        lambda: construct_singlestep(
            7,
            5,
            [Rational(1, 3), Rational(2, 3), Rational(1, 4), Rational(1, 2), Rational(3, 4), 1],
            assumptions="stage-order-3",
            verify=False,
        ),
    ),
    (
        "scalar 9 stages order 6, stage order 3, c = (1/3, 2/3, 1/5, 2/5, 3/5, 4/5, 1, 1/2), "
        "as a program",
        lambda: construct_singlestep(
            9, 6, [*ORDER6_NODES, Rational(1, 2)], assumptions="stage-order-3", form="program"
        ),
    ),
    (
        "scalar 10 stages order 6, stage order 3, res_6s's c = (1/3, 2/3, 1/7, ..., 6/7, 1), as a "
        "program (singularities, series, float64 cover, checked on it)",
        lambda: construct_singlestep(
            10,
            6,
            [Rational(1, 3), Rational(2, 3), *[Rational(k, 7) for k in range(1, 7)], 1],
            assumptions="stage-order-3",
            form="program",
        ),
    ),
    (
        "operator 8 stages weak order 5, Luan-Ostermann's zeros, c = (1/2, 1/2, 1/4, 1/2, 1/5, "
        "2/3, 1)",
        lambda: construct_operator(
            8,
            5,
            LO_NODES,
            **LUAN_OSTERMANN_EXPRK5S8,
        ),
    ),
    (
        "operator 5 stages weak order 4, HO's c = (1/2, 1/2, 1, 1/2)",
        lambda: construct_operator(
            5, 4, [Rational(1, 2), Rational(1, 2), 1, Rational(1, 2)], weak_top=True
        ),
    ),
]


def _outcome(result) -> str:
    if result.success:
        report = result.report
        if report is None:
            if result.tableau is not None and not result.tableau.free_symbols:
                return f"solved, not checked; free {result.free_parameters or '-'}"
            return "family (symbolic nodes)"
        program = (
            f"; a program of {len(result.program.definitions)} definitions, checked on it"
            if result.program is not None
            else ""
        )
        tried = getattr(result, "refused", [])
        refused = f"; refused first: {'; '.join(tried)}" if tried else ""
        return (
            f"stiff {report.stiff_order}, weak {report.weak_stiff_order} "
            f"({report.setting}); free {result.free_parameters or '-'}{program}{refused}"
        )
    return f"blocked by {result.blocked_by}"


def measure(slow: bool = False, only: str | None = None) -> list[dict]:
    """The table's rows; with ``only``, the constructions whose label contains it and nothing
    else."""
    rows = []
    for label, function in CASES + (SLOW_CASES if slow or only else []):
        if only is not None and only not in label:
            continue
        start = time.perf_counter()
        result = function()
        rows.append(
            {"case": label, "seconds": time.perf_counter() - start, "outcome": _outcome(result)}
        )
    if only is not None:
        return rows
    start = time.perf_counter()
    best, table = choose_nodes(
        3, 3, ["1/6", "1/5", "1/4", "1/3", "2/5", "1/2", "3/5", "2/3", "3/4", "4/5", "5/6", "1"]
    )
    rows.append(
        {
            "case": "res_3s node choice over a 12-value grid",
            "seconds": time.perf_counter() - start,
            "outcome": f"{len(table)} solvable pairs, best c = {[str(x) for x in best.nodes]}",
        }
    )
    for k in (2, 3, 4, 5, 6):
        start = time.perf_counter()
        report = check_multistep(exponential_adams(k), k + 1)
        rows.append(
            {
                "case": f"exponential Adams k = {k}, derive + check to order {k + 1}",
                "seconds": time.perf_counter() - start,
                "outcome": f"stiff order {report.stiff_order} for all step ratios",
            }
        )
    for k in (2, 3, 4, 5):
        start = time.perf_counter()
        report = check_multistep(exponential_adams_moulton(k), k + 2)
        rows.append(
            {
                "case": f"exponential Adams-Moulton on k = {k} past values (PEC corrector), "
                f"derive + check to order {k + 2}",
                "seconds": time.perf_counter() - start,
                "outcome": f"stiff order {report.stiff_order} for all step ratios",
            }
        )
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        written = generate(out=Path(folder))
        rows.append(
            {
                "case": "generate every registered module",
                "seconds": time.perf_counter() - start,
                "outcome": f"{len(written)} modules",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    parser.add_argument("--slow", action="store_true", help="add the constructions of minutes")
    parser.add_argument(
        "--only", metavar="TEXT", help="only the constructions whose label contains TEXT"
    )
    args = parser.parse_args()
    rows = measure(args.slow, args.only)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return
    print(f"Python {platform.python_version()} on {platform.machine()}\n")
    print("| derivation | time [s] | outcome |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['seconds']:.2f} | {row['outcome']} |")


if __name__ == "__main__":
    main()
