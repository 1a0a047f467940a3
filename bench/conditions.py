"""Benchmark: generating the stiff order conditions and checking expRK5s8 against them.

Prints, for p = 2..9, the number of conditions of orders 2..p, the time to generate them (trees,
condition objects and their text rendering, from a cold cache), and the time to check
``exprk5s8_lo`` exactly against them in the operator and the scalar setting. Targets (issue 2):
all conditions up to order 8 in under 5 s; a full check up to order 6 in under 0.5 s.

Usage: python bench/conditions.py [--max-order 9] [--format markdown|json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from phiforge.derive import conditions as conditions_module
from phiforge.derive.catalogue import catalogue_method
from phiforge.derive.check import check_tableau


def _timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def measure(max_order: int) -> list[dict]:
    method = catalogue_method("exprk5s8_lo")
    rows = []
    for p in range(2, max_order + 1):
        conditions_module._stiff_conditions.cache_clear()

        def generate(p=p):
            items = conditions_module.stiff_conditions(p, "operator")
            for item in items:
                item.expression("ascii")
            return items

        items, generate_s = _timed(generate)
        operator, operator_s = _timed(lambda p=p: check_tableau(method, p, "operator"))
        scalar, scalar_s = _timed(lambda p=p: check_tableau(method, p, "scalar"))
        rows.append(
            {
                "order": p,
                "conditions": len(items),
                "generate_s": generate_s,
                "check_operator_s": operator_s,
                "check_scalar_s": scalar_s,
                "stiff_order": operator.stiff_order,
                "weak_stiff_order": operator.weak_stiff_order,
                "scalar_stiff_order": scalar.stiff_order,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-order", type=int, default=9)
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    args = parser.parse_args()
    rows = measure(args.max_order)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{platform.processor() or 'unknown CPU'}\n"
    )
    print(
        "| p | conditions (orders 2..p) | generate + render [s] | check expRK5s8, operator [s] "
        "| check expRK5s8, scalar [s] |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['order']} | {r['conditions']} | {r['generate_s']:.4f} | "
            f"{r['check_operator_s']:.3f} | {r['check_scalar_s']:.3f} |"
        )


if __name__ == "__main__":
    main()
