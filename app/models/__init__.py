"""Models and batching: the registry, the served model, the batchers and the graph runtimes."""
