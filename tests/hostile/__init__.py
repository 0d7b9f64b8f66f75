"""Hostile capture shapes from outside testing (issue 13), one module per area.

Each module exposes `SHAPES: dict[str, Callable[[pathlib.Path, float], pathlib.Path]]`: a name
(kebab-case) → a function that writes one hostile capture into the given directory at the given
scale (1.0: the size the regression tests use; the benchmark `benchmarks/hostile.py` runs larger
scales and measures wall time, CPU time and peak memory of `ws-analyzer summary` on each) and
returns its path. The tests build the same inputs through these functions, so what the benchmark
measures is what the tests check.
"""
