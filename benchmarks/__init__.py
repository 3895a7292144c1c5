"""Served-versus-direct benchmarks of xinference: ``python -m benchmarks.run``.

Each measurement runs the same work twice in one run: through a real
``xinference-local`` (REST, model in its own process) and on the same engine
class built in this process. See docs/benchmarks.md for how to read the output.
"""
