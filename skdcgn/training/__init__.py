"""Training machinery that knows nothing of GANs: resumable state, divergence checks, data parallelism, schedules."""
