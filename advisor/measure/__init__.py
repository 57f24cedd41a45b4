"""Running models on this machine: ORT sessions and timing, per-node profiling, reading ORT's
profiler trace, and the environment fingerprint. Imports only `advisor.graph` and the base
modules.
"""
