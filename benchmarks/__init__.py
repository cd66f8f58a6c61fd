"""Benchmarks, run as modules from the repository's root (`python -m benchmarks.run`, `make bench`): each
measures on real engines and reports ratios measured side by side in one run (docs/benchmarks.md)."""
