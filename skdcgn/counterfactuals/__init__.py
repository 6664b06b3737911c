"""Counterfactual images x = m * f + (1 - m) * b, each mechanism with its own noise and class."""
