"""Benchmarks. Each module runs on its own (`python -m bench.NAME`) and rewrites its section
of BENCHMARKS.md; `python -m bench.run_all` (or `make bench`) runs them all."""
