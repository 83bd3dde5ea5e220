"""Anomaly detection on MNIST with one digit held out of training: AUROC per digit, AE vs VAE.

    python experiments/anomaly_heldout_digit.py --workdir runs/anomaly_heldout
    python experiments/anomaly_heldout_digit.py --workdir runs/quick --config.num_epochs=1
    python experiments/anomaly_heldout_digit.py --workdir runs/anomaly_heldout \
        --member=ae_holdout3 --member=vae_holdout3              # train one digit's pair only
    python experiments/anomaly_heldout_digit.py --workdir runs/anomaly_heldout --no_train

Unless --no_train, trains the sweep of configs/anomaly_heldout_digit.py through the launcher
(finished members are skipped): for every digit d an AE and a VAE (MLP 784-400-20, Bernoulli
decoder, dynamic binarisation, 5 epochs) on the training split without d, into
WORKDIR/{ae,vae}_holdout{d}; `--config.KEY=VALUE` arguments go to the launcher. Then, for
every digit whose AE and VAE are both finished, scores the whole test split
(`vae_jax.analysis.anomaly`): the AE by its reconstruction NLL, the VAE by reconstruction NLL,
-ELBO and the IWAE estimate of -log p(x) (`--k` samples), and reports the AUROC of "is digit
d" against the other nine. Scores are cached in each run's anomaly_scores.npz. Writes into
OUT (default WORKDIR/figures): anomaly_heldout_digit.{md,csv}, auroc_by_digit.png and, per
digit, extremes_{ae,vae}_holdout{d}.png (most and least anomalous test images).
"""

from __future__ import annotations

import sys

import _common  # pylint: disable=import-error

CONFIG = "configs/anomaly_heldout_digit.py"
COLUMNS = (("ae", "rec"), ("vae", "rec"), ("vae", "neg_elbo"), ("vae", "iwae"))


def scores_of(model, kind, images, k, workdir):
  """{method: scores} for the run, cached in WORKDIR/anomaly_scores.npz."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vae_jax.analysis import anomaly  # pylint: disable=g-import-not-at-top
  from vae_jax.runtime import files  # pylint: disable=g-import-not-at-top
  cache = workdir / "anomaly_scores.npz"
  methods = [m for kk, m in COLUMNS if kk == kind]
  if cache.exists():
    with np.load(cache) as f:
      if f.get("k", -1) == k and all(m in f for m in methods):
        return {m: f[m] for m in methods}
  import jax  # pylint: disable=g-import-not-at-top
  out = {m: anomaly.scores(model, images, m, key=jax.random.key(0), k=k) for m in methods}
  files.save_npz(cache, k=k, **out)  # whole or not at all
  return out


def main():
  p = _common.parser(__doc__.splitlines()[0], "runs/anomaly_heldout")
  p.add_argument("--k", type=int, default=100, help="importance samples of the IWAE score")
  args = _common.parse(p)
  if not args.no_train:
    _common.launch(CONFIG, args.workdir, args.overrides, args.member)

  import numpy as np  # pylint: disable=g-import-not-at-top  (after training: keep it fast)
  from vae_jax.analysis import anomaly  # pylint: disable=g-import-not-at-top
  from vae_jax.figures.grids import plt, save_figure  # pylint: disable=g-import-not-at-top

  # The study's runs by (held-out digit, kind), read from their saved configs, so a workdir
  # trained by an earlier version of this script (same folders, no sweep.csv) still counts.
  runs = {}
  for path, config in _common.finished_runs(args.workdir):
    held_out = tuple(config.data.exclude_labels)
    if len(held_out) != 1 or config.model.name not in ("ae", "vae"):
      print(f"skipped {path}: not an AE or VAE with one digit held out", file=sys.stderr)
      continue
    runs[held_out[0], config.model.name] = (path, config)
  digits = sorted({d for d, _ in runs})
  for d in [d for d in digits if len({k for dd, k in runs if dd == d}) < 2]:
    missing = "vae" if (d, "ae") in runs else "ae"
    print(f"skipped digit {d}: no finished {missing}_holdout{d}", file=sys.stderr)
    digits.remove(d)
  if not digits:
    _common.fail(f"{args.workdir} holds no digit whose AE and VAE are both finished; run "
                 "without --no_train (or with --member for the missing one)")

  data_cache = {}
  args.out.mkdir(parents=True, exist_ok=True)
  rows = []
  for d in digits:
    row = {}
    for kind in ("ae", "vae"):
      path, config = runs[d, kind]
      # The test split is the same with or without the exclusion; load it once for all runs.
      full = _common.load_data(config.data, data_cache, exclude_labels=())
      is_d = full.test_labels == d
      model = _common.load_model(path, full)
      s = scores_of(model, kind, full.test_images, args.k, path)
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
  configs = [c for d in digits for _, c in (runs[d, "ae"], runs[d, "vae"])]
  m = runs[digits[0], "vae"][1].model
  net = f"{m.architecture.upper()} {'-'.join(map(str, (*m.hidden_sizes, m.latent_dim)))}"
  notes = (f"AUROC of 'test image is the held-out digit' against the other digits "
           f"({len(full.test_labels):,} {full.name} test images). {net}, {m.likelihood} decoder, "
           f"{full.binarization} binarisation, {_common.epochs_of(configs)} each. Scores: "
           f"reconstruction NLL at the latent mean; -ELBO "
           f"with one sample; IWAE -log p(x) estimate with k={args.k}. Higher = better detector; "
           "0.5 = chance, below 0.5 = the held-out digit looks *more* normal than the rest.")
  paths = _common.write_table(args.out, "anomaly_heldout_digit", header, rows,
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
  save_figure(fig, args.out / "auroc_by_digit.png", dpi=120)  # whole or not at all
  for path in (*paths, args.out / "auroc_by_digit.png"):
    print(path)


if __name__ == "__main__":
  main()
