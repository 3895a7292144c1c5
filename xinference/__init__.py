"""Serve open models behind an OpenAI-compatible API, on one machine or a cluster."""

from ._version import __version__

__all__ = ["__version__"]
