"""What training and serving share, torch-free and web-free: the manifest contract and the model repository,
decoder heads, column kinds, the latent prior, generation, scoring and row formats (docs/architecture.md)."""
