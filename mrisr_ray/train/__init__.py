"""Training: the worker loop, checkpoints, and the Ray Train driver (`train`)."""
