"""The MNIST domain of the CGN paper: the real test split (IDX files), the colored / double-colored / wildlife
variants built from it, their palettes, and the paper's digit CNN. Nothing outside this package knows MNIST."""
