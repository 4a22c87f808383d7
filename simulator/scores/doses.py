"""Scores of the doses insights (simulator/scores)."""


def score(units):
    return []
