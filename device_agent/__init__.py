"""The fleet device agent: enrolls, keeps its registry credentials safe, pulls images."""

__version__ = "0.1.0"
