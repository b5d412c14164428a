"""Training, evaluation and export of the genserve VAE family (needs the `torch` extra)."""
