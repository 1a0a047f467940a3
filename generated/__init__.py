"""Torch modules emitted from the registry of verified methods (never edited by hand)."""
