"""The beta-VAE rate-distortion plane on MNIST: test KL (rate) against test reconstruction NLL
(distortion), one point per beta, with lines of constant R + D.

    python experiments/rate_distortion.py --workdir runs/beta

Trains (or reuses) the sweep of configs/mnist_beta.py (MLP 784-400-20, 8 betas from 0.1 to
10, trained together as one vectorised program) through the launcher, reads WORKDIR/sweep.csv
and writes WORKDIR/figures/rate_distortion.png. With --config.num_seeds=3 every beta is
trained with 3 seeds and drawn as mean +- std.
"""

from __future__ import annotations

import _common  # pylint: disable=import-error

CONFIG = "configs/mnist_beta.py"


def main():
  args = _common.parse(_common.parser(__doc__.splitlines()[0], "runs/beta"))
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
  print(figures.plot_rate_distortion(rows, args.out / "rate_distortion.png"))
  for r in sorted(rows, key=lambda r: r["beta"]):
    print(f"beta={r['beta']:<6g} rate (test/kl)={r['test/kl']:7.2f}  distortion (test/rec)="
          f"{r['test/rec']:7.2f}  -ELBO={r['test/neg_elbo']:7.2f}")


if __name__ == "__main__":
  main()
