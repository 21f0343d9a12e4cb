"""Benchmarks: run with `.venv/bin/python -m benchmarks.run_all --profile quick` (see README.md)."""
