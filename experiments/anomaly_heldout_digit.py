"""Anomaly detection on MNIST with one digit held out of training: AUROC per digit, AE vs VAE.

    python experiments/anomaly_heldout_digit.py --workdir runs/anomaly_heldout

For every digit d (`--digits`, default 0-9) trains (or reuses) an AE and a VAE of
configs/mnist_vae.py (MLP 784-400-20, Bernoulli decoder, dynamic binarisation;
`--epochs`, default 5) on the training set without d (`data.exclude_labels = (d,)`), into
WORKDIR/{ae,vae}_holdout{d}. Scores the whole test set (`vae_jax.anomaly`): the AE by its
reconstruction NLL, the VAE by reconstruction NLL, -ELBO and the IWAE estimate of -log p(x)
(`--k` samples), and reports the AUROC of "is digit d" against the other nine. Writes into
OUT (default WORKDIR/figures): anomaly_heldout_digit.{md,csv}, auroc_by_digit.png and, per
digit, extremes_{ae,vae}_holdout{d}.png (most and least anomalous test images).
"""

from __future__ import annotations

import _common  # pylint: disable=import-error
import _inline  # pylint: disable=import-error

COLUMNS = (("ae", "rec"), ("vae", "rec"), ("vae", "neg_elbo"), ("vae", "iwae"))


def scores_of(model, kind, images, k, workdir):
  """{method: scores} for the run, cached in WORKDIR/anomaly_scores.npz."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vae_jax import anomaly  # pylint: disable=g-import-not-at-top
  cache = workdir / "anomaly_scores.npz"
  methods = [m for kk, m in COLUMNS if kk == kind]
  if cache.exists():
    with np.load(cache) as f:
      if f.get("k", -1) == k and all(m in f for m in methods):
        return {m: f[m] for m in methods}
  import jax  # pylint: disable=g-import-not-at-top
  out = {m: anomaly.scores(model, images, m, key=jax.random.key(0), k=k) for m in methods}
  np.savez(cache, k=k, **out)
  return out


def main():
  p = _common.parser(__doc__.splitlines()[0], "runs/anomaly_heldout")
  p.add_argument("--epochs", type=int, default=5, help="training epochs of each model")
  p.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9", help="digits to hold out, in turn")
  p.add_argument("--k", type=int, default=100, help="importance samples of the IWAE score")
  args = _common.parse(p)
  digits = [int(d) for d in args.digits.split(",")]

  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import mnist_vae  # pylint: disable=g-import-not-at-top
  from vae_jax import anomaly, data as data_lib  # pylint: disable=g-import-not-at-top
  from vae_jax.plots import plt  # pylint: disable=g-import-not-at-top

  base = _inline.apply_overrides(mnist_vae.get_config(), args.overrides)
  base.num_epochs = args.epochs
  full = data_lib.load(base.data)
  args.out.mkdir(parents=True, exist_ok=True)
  rows = []
  for d in digits:
    tx, ty = data_lib.exclude_labels(full.train_images, full.train_labels, (d,))
    ds = data_lib.Dataset(full.name, full.binarization, tx, ty, full.test_images, full.test_labels)
    is_d = full.test_labels == d
    row = {}
    for kind in ("ae", "vae"):
      config = base.copy_and_resolve_references()
      config.model.name, config.data.exclude_labels = kind, (d,)
      wd = _common.pathlib.Path(args.workdir) / f"{kind}_holdout{d}"
      if args.no_train and not (wd / "results.json").exists():
        _common.fail(f"{wd} holds no finished run; run without --no_train")
      model = _inline.train_or_reuse(config, wd, ds)
      s = scores_of(model, kind, full.test_images, args.k, wd)
      for method, values in s.items():
        row[kind, method] = anomaly.auroc(values, is_d)
      main_score = s["iwae" if kind == "vae" else "rec"]
      anomaly.save_extremes(args.out / f"extremes_{kind}_holdout{d}.png", full.test_images,
                            main_score, title=f"{kind.upper()} trained without {d}: most (top) "
                            f"and least (bottom) anomalous test images")
    rows.append([d, *[row[c] for c in COLUMNS]])
    print(f"held out {d}: " + ", ".join(f"{k}/{m} {row[k, m]:.3f}" for k, m in COLUMNS), flush=True)
  means = np.mean([r[1:] for r in rows], axis=0)
  rows.append(["mean", *[float(v) for v in means]])
  header = ["held-out digit", "AE rec", "VAE rec", "VAE -ELBO", f"VAE IWAE (k={args.k})"]
  m = base.model
  net = f"{m.architecture.upper()} {'-'.join(map(str, (*m.hidden_sizes, m.latent_dim)))}"
  notes = (f"AUROC of 'test image is the held-out digit' against the other digits "
           f"({len(full.test_labels):,} {full.name} test images). {net}, {m.likelihood} decoder, "
           f"{full.binarization} binarisation, {args.epochs} epochs each. Scores: "
           f"reconstruction NLL at the latent mean; -ELBO "
           f"with one sample; IWAE -log p(x) estimate with k={args.k}. Higher = better detector; "
           "0.5 = chance, below 0.5 = the held-out digit looks *more* normal than the rest.")
  paths = _inline.write_table(args.out, "anomaly_heldout_digit", header, rows,
                              "Anomaly detection: one MNIST digit held out of training", notes)

  fig, ax = plt.subplots(figsize=(8, 3.6))
  width = 0.2
  for i, (label, col) in enumerate(zip(header[1:], range(1, 5))):
    ax.bar(np.arange(len(digits)) + (i - 1.5) * width, [r[col] for r in rows[:-1]], width,
           label=label)
  ax.axhline(0.5, color="k", lw=0.8, ls="--")
  ax.set_xticks(np.arange(len(digits)), [str(d) for d in digits])
  ax.set_xlabel("held-out digit")
  ax.set_ylabel("AUROC")
  ax.set_ylim(0, 1)
  ax.legend(fontsize=7, ncol=4, loc="lower center")
  fig.tight_layout()
  fig.savefig(args.out / "auroc_by_digit.png", dpi=120)
  plt.close(fig)
  for path in (*paths, args.out / "auroc_by_digit.png"):
    print(path)


if __name__ == "__main__":
  main()
