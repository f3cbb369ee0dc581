"""veff: a variant effect engine for sequence-to-function models in JAX/Flax."""

__version__ = "0.1.0"
