"""The benchmark scripts run and report the right counts (their timings are not asserted)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conditions_benchmark_counts_and_orders():
    rows = _load("conditions").measure(5)
    assert [r["conditions"] for r in rows] == [1, 3, 7, 16]
    assert [r["stiff_order"] for r in rows] == [2, 3, 4, 4]
    assert [r["weak_stiff_order"] for r in rows] == [2, 3, 4, 5]
    assert [r["scalar_stiff_order"] for r in rows] == [2, 3, 4, 4]
