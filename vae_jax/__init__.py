"""vae-jax: autoencoders, VAEs and beta-VAEs in JAX / Flax NNX."""

__version__ = "0.1.0"
