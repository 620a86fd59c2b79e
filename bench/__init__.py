"""Benchmarks and the simulation harness: the portal's side of ``python -m gateway simulate``.

A Django app only so that its ``bench_*`` and ``simulated_keys`` commands are found.
It may import every other app and the gateway agent's simulated driver; nothing
imports it (an import contract in pyproject.toml says so), so the apps stay free of
what only measuring and demonstrating needs.
"""
