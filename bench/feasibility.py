"""Benchmark: pointwise feasibility of the scalar stiff conditions (derive.feasibility).

For each (stages, order, z) the conditions of orders 2..order are solved at that one z from
random starts, nodes free in [0, 1] and every coefficient in [-100, 100], without simplifying
assumptions. The smallest residual is ~1e-16 where the system is solvable and bounded away from
0 where it is not: a positive minimum is a (numerical) proof that no method with that many
stages reaches that stiff order, for any nodes; a solution is evidence, not a method
(docs/registry-and-codegen.md, "Fewest stages").

Usage: python bench/feasibility.py [--cases 7:6:0,7:6:-1,...] [--starts 20] [--format json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from phiforge.derive.feasibility import pointwise_feasibility

DEFAULT_CASES = "5:5:0,5:5:-1,6:5:-1,6:6:0,6:6:-1,7:6:0,7:6:-1,8:6:-1"


def measure(
    cases: list[tuple[int, int, float]], starts: int, seed: int, assumptions: str = "none"
) -> list[dict]:
    rows = []
    for stages, order, z in cases:
        started = time.perf_counter()
        result = pointwise_feasibility(
            stages, order, z, starts=starts, seed=seed, assumptions=assumptions
        )
        rows.append(
            {
                "stages": stages,
                "order": order,
                "z": z,
                "equations": result.equations,
                "unknowns": result.unknowns,
                "assumptions": assumptions,
                "best": result.best,
                "next": sorted(result.residuals)[1:4],
                "dimension": result.dimension,
                "size": result.size,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help="stages:order:z,...")
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--assumptions", default="none", help="none, stage-order-2 or stage-order-3"
    )
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    args = parser.parse_args()
    cases = []
    for text in args.cases.split(","):
        stages, order, z = text.split(":")
        cases.append((int(stages), int(order), float(z)))
    rows = measure(cases, args.starts, args.seed, args.assumptions)
    if args.format == "json":
        print(json.dumps({"python": platform.python_version(), "rows": rows}, indent=2))
        return
    print(
        f"{args.starts} starts per row, seed {args.seed}, assumptions {args.assumptions}, "
        f"python {platform.python_version()}\n"
    )
    print("| stages | order | z | equations | unknowns | smallest residual | next three | "
          "local dimension | max coefficient | time [s] |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        following = ", ".join(f"{v:.1e}" for v in r["next"])
        print(
            f"| {r['stages']} | {r['order']} | {r['z']:g} | {r['equations']} | {r['unknowns']} | "
            f"{r['best']:.2e} | {following} | {r['dimension']} | {r['size']:.1f} | "
            f"{r['seconds']} |"
        )


if __name__ == "__main__":
    main()
