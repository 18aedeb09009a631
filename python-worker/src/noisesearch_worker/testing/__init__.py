"""Helpers that build tiny random releases for tests (needs diffusers + transformers)."""
