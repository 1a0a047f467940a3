"""Symbolic layer: phi functions, rooted trees, order conditions, tableaus (no torch)."""
