"""Ratings across any number of arms from blind pairwise votes (the multi-arm half of the statistics).

An arm is whatever answered a prompt: the base model, the base with a prompt, a run, an external
endpoint. Every stored vote on a pair of arms becomes one ``Comparison`` in the arms' terms (which arm
was shown left, which right, and who won), so votes gathered anywhere can be rated the same way.
The two-arm figures (win rate, Wilson interval, sign test, position bias, alpha) stay in
``evaluation.stats``; this module holds what needs more than two arms.

Example::

    comparisons = [Comparison("p1", "ana", left="base", right="run 3", outcome="right"), ...]
"""
from __future__ import annotations

from dataclasses import dataclass

OUTCOMES = ("left", "right", "tie", "both_bad")


@dataclass(frozen=True)
class Comparison:
    """One vote on one pair of arms: ``left`` was shown as A, ``right`` as B; ``outcome`` says which won."""
    prompt_id: str
    rater: str
    left: str               # arm name shown as A
    right: str              # arm name shown as B
    outcome: str            # left | right | tie | both_bad
    label: str | None = None

    @property
    def winner(self) -> str | None:
        """The arm that won; None for a tie or both bad."""
        return {"left": self.left, "right": self.right}.get(self.outcome)

    @property
    def loser(self) -> str | None:
        """The arm that lost; None for a tie or both bad."""
        return {"left": self.right, "right": self.left}.get(self.outcome)
