"""Scores of the motors insights (simulator/scores)."""


def score(units):
    return []
