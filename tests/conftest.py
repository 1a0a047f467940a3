"""Shared fixtures: the catalogue and the symbol z."""

import pytest

from phiforge.derive.catalogue import catalogue_method, catalogue_names
from phiforge.derive.tableau import Z


@pytest.fixture(scope="session")
def z():
    return Z


@pytest.fixture(scope="session")
def catalogue():
    return {name: catalogue_method(name) for name in catalogue_names()}
