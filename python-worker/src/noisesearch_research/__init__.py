"""noisesearch research tools: a Python client for the public API, budget sweeps, held-out metrics, figures."""
