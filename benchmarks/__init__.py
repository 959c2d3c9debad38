"""smartpool's benchmark suite: `python -m benchmarks --help`.

Kept free of imports: the cold-start probe imports this package before timing an engine.
"""
