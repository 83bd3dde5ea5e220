"""Test reconstruction NLL and -ELBO against latent size, AE and VAE side by side (MNIST).

    python experiments/latent_size.py --workdir runs/latent

Trains (or reuses) the sweep of configs/mnist_latent.py (AE and VAE, MLP 784-400-z for
z in 2, 5, 10, 20, 50; 10 runs of 30 epochs) through the launcher, reads WORKDIR/sweep.csv
and writes WORKDIR/figures/latent_size.png.
"""

from __future__ import annotations

import _common  # pylint: disable=import-error

CONFIG = "configs/mnist_latent.py"


def main():
  args = _common.parse(_common.parser(__doc__.splitlines()[0], "runs/latent"))
  if not args.no_train:
    _common.launch(CONFIG, args.workdir, args.overrides)
  from vae_jax import figures  # pylint: disable=g-import-not-at-top
  csv_path = _common.pathlib.Path(args.workdir) / "sweep.csv"
  if not csv_path.exists():
    _common.fail(f"{csv_path} is missing: train the sweep first (run without --no_train)")
  rows = [r for r in figures.read_sweep_csv(csv_path) if r.get("status", "finished") == "finished"]
  if not rows:
    _common.fail(f"{csv_path} lists no finished member")
  args.out.mkdir(parents=True, exist_ok=True)
  print(figures.plot_latent_size(rows, args.out / "latent_size.png"))
  for r in sorted(rows, key=lambda r: (r["model.name"], r["model.latent_dim"])):
    print(f"{r['model.name']:>3} z={r['model.latent_dim']:<3} test/rec={r['test/rec']:7.2f}  "
          f"test/neg_elbo={r['test/neg_elbo']:7.2f}")


if __name__ == "__main__":
  main()
