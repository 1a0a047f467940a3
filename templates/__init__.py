"""Jinja2 templates of the generated torch modules (one per method family)."""
