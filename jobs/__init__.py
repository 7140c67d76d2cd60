"""Thin entry points and Ray wiring; each job is runnable as ``python -m jobs.<name>``."""
