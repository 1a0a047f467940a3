"""Torch layer: schedules, model wrappers, phi numerics, the sampling driver."""
