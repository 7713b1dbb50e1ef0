"""Benchmarks (``make bench``); each figure measured side by side in one run."""
