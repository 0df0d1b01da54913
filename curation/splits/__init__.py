"""Splits: random, stratified and grouped train/val/test splits, the balance report, and the leakage
audit between splits with its fix."""
