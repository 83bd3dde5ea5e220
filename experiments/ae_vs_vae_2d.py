"""AE vs VAE with a 2-D latent space on MNIST: latent scatters, manifolds, samples, and more.

    python experiments/ae_vs_vae_2d.py --workdir runs/ae_vs_vae
    python experiments/ae_vs_vae_2d.py --workdir runs/quick --config.num_epochs=1
    python experiments/ae_vs_vae_2d.py --workdir runs/ae_vs_vae --no_train

Unless --no_train, trains the two members of configs/mnist_ae_vs_vae.py (MLP 784-400-2,
Bernoulli decoder, 30 epochs) through the launcher (finished members are skipped;
`--config.KEY=VALUE` arguments go to it). Then, for each finished 2-D AE and VAE in WORKDIR,
writes into OUT (default WORKDIR/figures):

    ae_vs_vae.png                 both latent scatters and both 10x10 manifolds, side by side
                                  (when both are finished)
    {ae,vae}_latents.png          test latents coloured by digit
    {ae,vae}_manifold.png         decoded grid (VAE: prior quantiles; AE: its latents' range)
    {ae,vae}_samples.png          decoded samples (VAE: prior; AE: Gaussian fit to its latents)
    {ae,vae}_interpolations.png   decoded straight lines between pairs of test digits
    {ae,vae}_reconstructions.png  test inputs and reconstructions
"""

from __future__ import annotations

import shutil
import sys

import _common  # pylint: disable=import-error

CONFIG = "configs/mnist_ae_vs_vae.py"


def main():
  args = _common.parse(_common.parser(__doc__.splitlines()[0], "runs/ae_vs_vae"))
  if not args.no_train:
    _common.launch(CONFIG, args.workdir, args.overrides, args.member)

  import jax  # pylint: disable=g-import-not-at-top  (after training: keep the launcher's start fast)
  from vae_jax import figures, latents  # pylint: disable=g-import-not-at-top
  from vae_jax.runtime import files  # pylint: disable=g-import-not-at-top

  runs = {c.model.name: (p, c) for p, c in _common.finished_runs(args.workdir)
          if c.model.latent_dim == 2 and c.model.name in ("ae", "vae")}
  if not runs:
    _common.fail(f"{args.workdir} holds no finished 2-D AE or VAE; run without --no_train")
  data_cache = {}
  ds = _common.load_data(runs.get("vae", next(iter(runs.values())))[1].data, data_cache)
  models = {k: _common.load_model(p, _common.load_data(c.data, data_cache))
            for k, (p, c) in sorted(runs.items())}
  args.out.mkdir(parents=True, exist_ok=True)
  out = args.out
  written = []
  if set(models) == {"ae", "vae"}:
    written.append(figures.save_ae_vs_vae(out / "ae_vs_vae.png", models["ae"], models["vae"],
                                          ds.test_images, ds.test_labels, dataset_name=ds.name))
  else:
    print(f"ae_vs_vae.png skipped: no finished 2-D {({'ae', 'vae'} - set(models)).pop()}",
          file=sys.stderr)
  ia, ib, pair_labels = figures.interpolation_pairs(ds.test_labels)
  for kind, model in models.items():
    lat = latents.encode_means(model, ds.test_images)
    name = kind.upper()
    written += [
        figures.save_latent_scatter(out / f"{kind}_latents.png", lat, ds.test_labels,
                                    f"{name} (2-D latent): test images, coloured by digit"),
        figures.save_manifold(out / f"{kind}_manifold.png", model, lat),
        figures.save_samples(out / f"{kind}_samples.png", model, jax.random.key(0), 64,
                             ds.train_images[:10000]),
        figures.save_interpolations(out / f"{kind}_interpolations.png", model,
                                    ds.test_images[ia], ds.test_images[ib], 10, pair_labels),
    ]
    recon = runs[kind][0] / "reconstructions.png"
    if recon.exists():
      with open(recon, "rb") as src:  # copied whole or not at all
        written.append(files.write_with(out / f"{kind}_reconstructions.png",
                                        lambda f, src=src: shutil.copyfileobj(src, f)))
  for path in written:
    print(path)


if __name__ == "__main__":
  main()
