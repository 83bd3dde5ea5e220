"""Figures as PNG files (matplotlib, no display): image grids and the one writer (`grids`), a
trained model's latent space, samples and interpolations (`latents`), and a sweep's comparison
plots (`sweeps`)."""

from vae_jax.figures.grids import save_figure, save_grid, save_reconstructions, tile  # noqa: F401
from vae_jax.figures.latents import (decode_manifold, interpolation_pairs,  # noqa: F401
                                     manifold_axes, save_ae_vs_vae, save_interpolations,
                                     save_latent_figures, save_latent_scatter, save_manifold,
                                     save_samples)
