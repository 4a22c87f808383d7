"""Scores of the consumables insights (simulator/scores)."""


def score(units):
    return []
