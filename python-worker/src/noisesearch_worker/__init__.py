"""noisesearch worker: SiT sampling, noise recipes and verifiers served over gRPC."""
__version__ = "0.1.0"
