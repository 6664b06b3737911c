"""The downstream test of the CGN paper: a classifier trained on counterfactuals, tested out of distribution."""
