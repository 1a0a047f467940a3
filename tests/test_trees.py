"""Rooted trees: counts, canonical form, rendering, density and symmetry."""

import random
from math import factorial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phiforge.derive.errors import InputError
from phiforge.derive.trees import (
    CONDITIONS_UP_TO_MAX_ORDER,
    MAX_ORDER,
    RootedTree,
    count_trees,
    trees,
    trees_up_to,
)

A000081 = [1, 1, 2, 4, 9, 20, 48, 115, 286, 719, 1842, 4766, 12486, 32973]


def test_counts_equal_oeis_a000081_up_to_14():
    assert [count_trees(n) for n in range(1, 15)] == A000081


def test_condition_count_quoted_for_the_order_bound_is_oeis_a000081():
    # trees with 2..16 vertices; A000081(15), A000081(16) = 87811, 235381 (OEIS)
    assert sum(A000081[1:]) + 87811 + 235381 == CONDITIONS_UP_TO_MAX_ORDER


def test_enumeration_yields_distinct_canonical_trees():
    for n in range(1, 10):
        items = list(trees(n))
        assert len(set(items)) == len(items) == A000081[n - 1]
        assert all(RootedTree.from_levels(t.levels) == t for t in items)


def test_first_and_last_trees_are_chain_and_star():
    items = list(trees(6))
    assert items[0].levels == (1, 2, 3, 4, 5, 6)
    assert items[-1].levels == (1, 2, 2, 2, 2, 2)


@pytest.mark.parametrize("n", range(1, 10))
def test_sum_of_alpha_is_n_minus_1_factorial(n):
    # alpha(t) = n!/(sigma(t) gamma(t)) counts increasingly labelled trees: sum = (n - 1)!
    assert sum(factorial(n) // (t.symmetry * t.density) for t in trees(n)) == factorial(n - 1)


@pytest.mark.parametrize("n", range(1, 9))
def test_sum_of_beta_is_cayley_count(n):
    # beta(t) = n!/sigma(t) counts labelled rooted trees: n^(n-1) (Cayley)
    assert sum(factorial(n) // t.symmetry for t in trees(n)) == n ** (n - 1)


def test_render_and_parse_round_trip():
    for tree in trees_up_to(8):
        assert RootedTree.parse(str(tree)) == tree
        assert RootedTree.parse(tree.ascii) == tree


def test_rendering_examples():
    assert str(RootedTree.parse("[[t]t^2]")) == "[[τ]τ^2]"
    assert RootedTree.parse("[[t]t^2]").levels == (1, 2, 3, 2, 2)
    assert RootedTree.parse("[t[t]]") == RootedTree.parse("[[t]t]")
    assert RootedTree.parse("[[τ][τ]τ]").latex() == r"[[\tau][\tau]\tau]"


def _random_tree_levels(draw_sizes: list[int], rng: random.Random) -> list[int]:
    levels = [1]
    for _ in draw_sizes:
        levels.append(rng.randint(2, levels[-1] + 1))
    return levels


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=10), st.integers(0, 10**6))
def test_any_level_sequence_maps_to_an_enumerated_tree(sizes, seed):
    levels = _random_tree_levels(sizes, random.Random(seed))
    tree = RootedTree.from_levels(levels)
    assert tree in set(trees(len(levels)))


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.integers(2, 9), st.integers(0, 10**6))
def test_children_order_does_not_matter(n, seed):
    rng = random.Random(seed)
    tree = rng.choice(list(trees(n)))
    shuffled = list(tree.children)
    rng.shuffle(shuffled)
    assert RootedTree.from_children(shuffled) == tree


@pytest.mark.parametrize("bad", [(), (2,), (1, 3), (1, 2, 4)])
def test_invalid_level_sequences_are_rejected(bad):
    with pytest.raises(InputError, match="'levels'"):
        RootedTree.from_levels(bad)


def test_non_canonical_constructor_input_is_rejected():
    with pytest.raises(InputError, match="not canonical"):
        RootedTree((1, 2, 2, 3))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4", True, MAX_ORDER + 1, 99])
def test_bad_order_is_rejected(bad):
    with pytest.raises(InputError, match=f"'n' must be an integer in 1..{MAX_ORDER}"):
        list(trees(bad))


def test_bad_parse_input():
    with pytest.raises(InputError, match="'text'"):
        RootedTree.parse("[[t]")
    with pytest.raises(InputError, match="'text'"):
        RootedTree.parse("[]")
