"""Scores: each insight against the simulator's truth, one module per area (score(units))."""
