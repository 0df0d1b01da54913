"""Evaluation: generation, playground, blind pairwise rating, statistics, feedback into data."""
