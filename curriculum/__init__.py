"""Turns per-example scores into per-epoch sampling distributions."""
