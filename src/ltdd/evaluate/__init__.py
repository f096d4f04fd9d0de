"""Evaluation: train a fresh network on a small set, then measure it on the test sets."""
