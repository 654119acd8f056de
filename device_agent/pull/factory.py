"""Picks a pull backend by name: the one module that imports the backends (each of them imports
only the interface in ``backend``), and lazily, so a device using one backend never loads the
others. A new backend: a class with the ``Backend`` interface, and its name here."""

from __future__ import annotations

from device_agent.pull.backend import Backend


def make_backend(name: str) -> Backend:
    """Imports lazily: a device using one backend never loads the others."""
    if name == "builtin":
        from device_agent.pull.builtin_child import ChildPuller

        return ChildPuller()
    if name == "skopeo":
        from device_agent.pull.skopeo_backend import SkopeoBackend

        return SkopeoBackend()
    if name in ("docker", "podman"):
        from device_agent.pull.engine_backend import EngineBackend

        return EngineBackend(name)
    raise ValueError(f"unknown pull backend {name!r}")
