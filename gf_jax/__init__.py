"""gf-jax: GameFormer-Planner in JAX/Flax, its data layer, training and evaluation."""

__version__ = "0.1.0"
