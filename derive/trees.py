"""Rooted trees in canonical level-sequence form.

A rooted tree with n vertices is stored as its *level sequence*: the depth of each vertex (root = 1)
in depth-first order, with the subtrees of every vertex ordered so that the sequence is
lexicographically largest. That canonical form is a hashable tuple, so equal trees compare and
hash equal without any search over orderings.

All trees with n vertices are enumerated by the constant-amortised-time successor rule of
T. Beyer and S. M. Hedetniemi, "Constant time generation of rooted trees", SIAM J. Comput. 9
(1980) 706-712, which yields exactly the canonical sequences, from the chain [1, 2, ..., n] down to
the star [1, 2, ..., 2]. Counts per n are OEIS A000081 (1, 1, 2, 4, 9, 20, 48, 115, 286, 719, ...).

Trees render in Butcher's bracket notation with tau for a single vertex: ``[[τ]τ^2]`` is a root
with one child that has a leaf child, and two leaf children (spec order-conditions.md §3).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from math import factorial, prod

from phiforge.derive.errors import InputError, integer_in

__all__ = [
    "CONDITIONS_UP_TO_MAX_ORDER",
    "MAX_ORDER",
    "RootedTree",
    "count_trees",
    "trees",
    "trees_up_to",
]

# The largest order (number of vertices) the enumeration accepts. The number of trees grows about
# 3x per vertex (A000081): 16 vertices are 235,381 trees and the conditions of orders 2..16 are
# 376,463, which `phiforge check --order 16` decides in about 140 s and 2.4 GB on two cores;
# order 20 would be 12.8 million trees of 20 vertices alone (measured: > 300 s and 11.9 GB).
MAX_ORDER = 16
CONDITIONS_UP_TO_MAX_ORDER = 376_463  # trees with 2..16 vertices (sum of A000081)


def _check_order(n: object, name: str = "n", minimum: int = 1) -> int:
    return integer_in(n, f"'{name}'", minimum, MAX_ORDER, _WHY)


_WHY = (
    f"the tree count grows about 3x per order: order {MAX_ORDER} is already "
    f"{CONDITIONS_UP_TO_MAX_ORDER:,} conditions"
)


def _level_sequences(n: int) -> Iterator[tuple[int, ...]]:
    """Canonical level sequences of all rooted trees with n vertices (Beyer-Hedetniemi)."""
    if n == 1:
        yield (1,)
        return
    levels = list(range(1, n + 1))
    while True:
        yield tuple(levels)
        p = n - 1
        while p > 0 and levels[p] == 2:
            p -= 1
        if p == 0:
            return
        q = p - 1
        while levels[q] != levels[p] - 1:
            q -= 1
        for i in range(p, n):
            levels[i] = levels[i - p + q]


def _split_children(levels: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Level sequences (re-based to root level 1) of the root's child subtrees, in stored order."""
    root = levels[0]
    children: list[tuple[int, ...]] = []
    start = 1
    for i in range(2, len(levels) + 1):
        if i == len(levels) or levels[i] == root + 1:
            shift = levels[start] - 1
            children.append(tuple(level - shift for level in levels[start:i]))
            start = i
    return children


@dataclass(frozen=True, order=True)
class RootedTree:
    """A rooted tree, identified by its canonical level sequence (root level 1)."""

    levels: tuple[int, ...]

    def __post_init__(self) -> None:
        levels = self.levels
        if not levels or levels[0] != 1 or any(not 1 < b <= a + 1 for a, b in pairwise(levels)):
            raise InputError(
                f"parameter 'levels' must be a level sequence starting at 1 with every later "
                f"entry in 2..previous+1, got {levels!r}"
            )
        if RootedTree._canonical(levels) != levels:
            raise InputError(
                f"parameter 'levels' {levels!r} is not canonical; use RootedTree.from_levels"
            )

    @staticmethod
    def _canonical(levels: tuple[int, ...]) -> tuple[int, ...]:
        if len(levels) == 1:
            return (1,)
        kids = sorted((RootedTree._canonical(c) for c in _split_children(levels)), reverse=True)
        return (1, *(level + 1 for kid in kids for level in kid))

    @classmethod
    def _from_canonical(cls, levels: tuple[int, ...]) -> RootedTree:
        # The enumerator yields canonical sequences only, so the validation is skipped.
        tree = object.__new__(cls)
        object.__setattr__(tree, "levels", levels)
        return tree

    @classmethod
    def from_levels(cls, levels: tuple[int, ...] | list[int]) -> RootedTree:
        """The tree of any (not necessarily canonical) level sequence."""
        levels = tuple(levels)
        if not levels or levels[0] != 1 or any(not 1 < b <= a + 1 for a, b in pairwise(levels)):
            raise InputError(
                f"parameter 'levels' must start at 1 with every later entry in 2..previous+1, "
                f"got {levels!r}"
            )
        return cls(cls._canonical(levels))

    @classmethod
    def from_children(cls, children: list[RootedTree] | tuple[RootedTree, ...]) -> RootedTree:
        """The tree whose root has the given subtrees (Butcher's product [t_1 ... t_m])."""
        kids = sorted((c.levels for c in children), reverse=True)
        return cls((1, *(level + 1 for kid in kids for level in kid)))

    @property
    def order(self) -> int:
        """Number of vertices |t|."""
        return len(self.levels)

    @cached_property
    def children(self) -> tuple[RootedTree, ...]:
        """The root's child subtrees, largest first (canonical order)."""
        return tuple(RootedTree(c) for c in _split_children(self.levels))

    @cached_property
    def leaf_children(self) -> int:
        """Number of children of the root that are single vertices."""
        return sum(1 for c in self.children if c.order == 1)

    @cached_property
    def subtree_children(self) -> tuple[RootedTree, ...]:
        """Children of the root that have children of their own (non-leaf children)."""
        return tuple(c for c in self.children if c.order > 1)

    @property
    def is_bushy(self) -> bool:
        """True when every child of the root is a leaf (this includes the single vertex)."""
        return not self.subtree_children

    @cached_property
    def nonleaf_vertices(self) -> int:
        """Number of vertices with at least one child (one variable each in the stiff setting)."""
        return sum(1 for a, b in pairwise(self.levels) if b > a)

    @cached_property
    def density(self) -> int:
        """Butcher's density gamma(t) = |t| * prod gamma(children)."""
        return self.order * prod(c.density for c in self.children)

    @cached_property
    def symmetry(self) -> int:
        """Butcher's symmetry sigma(t) = prod over distinct children u of m_u! sigma(u)^{m_u}."""
        counts: dict[RootedTree, int] = {}
        for child in self.children:
            counts[child] = counts.get(child, 0) + 1
        return prod(factorial(m) * child.symmetry**m for child, m in counts.items())

    def render(self, leaf: str = "τ") -> str:
        """Butcher bracket notation: non-leaf children first, then the leaves as ``τ^k``."""
        if self.order == 1:
            return leaf
        parts = [c.render(leaf) for c in self.subtree_children]
        k = self.leaf_children
        if k:
            parts.append(leaf if k == 1 else f"{leaf}^{k}")
        return "[" + "".join(parts) + "]"

    def __str__(self) -> str:
        return self.render()

    @property
    def ascii(self) -> str:
        """Bracket notation with ``t`` for a vertex, e.g. ``[[t]t^2]``."""
        return self.render("t")

    def latex(self) -> str:
        """Bracket notation for LaTeX, e.g. ``[[\\tau]\\tau^{2}]``."""
        if self.order == 1:
            return r"\tau"
        parts = [c.latex() for c in self.subtree_children]
        k = self.leaf_children
        if k:
            parts.append(r"\tau" if k == 1 else rf"\tau^{{{k}}}")
        return "[" + "".join(parts) + "]"

    @classmethod
    def parse(cls, text: str) -> RootedTree:
        """Inverse of :meth:`render` (accepts ``τ`` or ``t`` for a vertex)."""
        source = text.replace(" ", "").replace("τ", "t")
        tree, end = cls._parse_at(source, 0)
        if end != len(source):
            raise InputError(f"parameter 'text': cannot parse tree {text!r} at position {end}")
        return tree

    @classmethod
    def _parse_at(cls, s: str, i: int) -> tuple[RootedTree, int]:
        if s.startswith("t", i):
            return cls((1,)), i + 1
        if not s.startswith("[", i):
            raise InputError(f"parameter 'text': expected '[' or 't' at position {i} of {s!r}")
        i += 1
        kids: list[RootedTree] = []
        while i < len(s) and s[i] != "]":
            if s[i] == "t":
                power, j = 1, i + 1
                if s.startswith("^", j):
                    k = j + 1
                    while k < len(s) and s[k].isdigit():
                        k += 1
                    if k == j + 1:
                        raise InputError(f"parameter 'text': missing exponent in {s!r}")
                    power, j = int(s[j + 1 : k]), k
                kids.extend([cls((1,))] * power)
                i = j
            else:
                kid, i = cls._parse_at(s, i)
                kids.append(kid)
        if i >= len(s):
            raise InputError(f"parameter 'text': unbalanced brackets in {s!r}")
        if not kids:
            raise InputError(f"parameter 'text': empty brackets in {s!r}")
        return cls.from_children(kids), i + 1


def trees(n: int) -> Iterator[RootedTree]:
    """All rooted trees with exactly n vertices, in canonical (decreasing level-sequence) order."""
    _check_order(n)
    for levels in _level_sequences(n):
        yield RootedTree._from_canonical(levels)


def trees_up_to(p: int, start: int = 1) -> list[RootedTree]:
    """All rooted trees with start..p vertices, by order, each order in canonical order."""
    _check_order(p, "p")
    integer_in(start, "'start'", 1, 10**6, "the fewest vertices")
    return [t for n in range(start, p + 1) for t in trees(n)]


def count_trees(n: int) -> int:
    """Number of rooted trees with n vertices (OEIS A000081), by enumeration."""
    return sum(1 for _ in _level_sequences(_check_order(n)))
