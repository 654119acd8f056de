"""Helpers that start and drive the real parts (registry, broker, skopeo) for tests."""
