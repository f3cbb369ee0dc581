"""veff: a variant effect engine for sequence-to-function models in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The Python API (veff.score, veff.open, veff.load_model) imports jax lazily, so
    # `import veff` and the CLI's start-up stay cheap.
    if name in ("score", "open", "load_model", "Model"):
        from veff import api

        return getattr(api, name)
    raise AttributeError(f"module 'veff' has no attribute {name!r}")
