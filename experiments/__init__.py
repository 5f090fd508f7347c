"""Experiment scripts (run, sweep, report, benchmarks) and the small modules they share."""
