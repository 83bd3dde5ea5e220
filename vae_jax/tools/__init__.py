"""Commands on finished workdirs, run as `python -m vae_jax.tools.<name> --workdir DIR`:
`nll` (the IWAE estimate of the test log-likelihood), `encode` (latent means and labels as
.npy), `denoise` (denoising metrics and figure). Nothing in the library imports them."""
