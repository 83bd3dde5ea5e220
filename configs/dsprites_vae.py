"""A beta-VAE on procedural dSprites, sized for a 2-core CPU, with disentanglement_lib's metrics.

    python launch.py --config configs/dsprites_vae.py --workdir runs/dsprites_vae

dSprites (Matthey et al., 2017) is built in: 737,280 binary 64x64 sprites rendered from the
release's exact factor grid (shape 3, scale 6, orientation 40, position x 32, position y 32;
`vae_jax/data/dsprites.py`, "procedural dSprites"), or the released file when
`dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz` is in `$VAE_JAX_MANUAL_DIR/dsprites`. Every
image trains, as in disentanglement_lib; a fixed subset of 10,000 is the test split for the ELBO.

The model is an MLP, as Higgins et al. (2017) used on dSprites (theirs 1200-1200; 512-256 here
to fit the CPU budget), 10 latents, Bernoulli decoder, beta = 4. At the end it writes the nine
`disentanglement/*` metrics into results.json (at `disentanglement_sample_scale` of
disentanglement_lib's sample counts: DCI's gradient boosted trees take ~10 CPU minutes at full
counts; `python -m vae_jax.tools.disentanglement --workdir DIR` recomputes them at any scale),
`traversals.png` and `factor_traversals.png`. docs/results.md lists what it reaches.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.data.name = "dsprites"
  c.data.binarization = "static"  # binary already
  c.model.architecture = "mlp"
  c.model.hidden_sizes = (512, 256)
  c.model.latent_dim = 10
  c.beta = 4.0
  c.batch_size = 128
  c.learning_rate = 5e-4
  c.num_epochs = 2  # 11,520 steps of 128 images
  c.checkpoint_every_epochs = 1
  c.eval_disentanglement = True
  c.disentanglement_sample_scale = 0.2
  return c
