"""Benchmarks for makini_async (see benchmarks/README.md)."""
