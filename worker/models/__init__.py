"""Models: the catalogue of model files (pull, verify), the per-process cache, devices."""
