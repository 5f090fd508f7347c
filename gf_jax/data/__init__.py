"""Scenario data in the GameFormer layout: schema, sources (procedural world, npz, nuPlan) and cache."""

from gf_jax.data.schema import DataError, ScenarioSet

__all__ = ["DataError", "ScenarioSet"]
