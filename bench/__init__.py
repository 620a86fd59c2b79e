"""Benchmarks, the demo and the simulation harness: the portal's side of
``python -m gateway simulate``.

A Django app only so that its commands are found: ``bench_*``, ``seed_demo`` (every
app's demo data, and the firmware image the simulated devices take) and
``simulated_keys``.
It may import every other app and the gateway agent's simulated driver; nothing
imports it (an import contract in pyproject.toml says so), so the apps stay free of
what only measuring and demonstrating needs.
"""
