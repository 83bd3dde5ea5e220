"""Out-of-distribution detection across datasets: train on Fashion-MNIST, score Fashion-MNIST
test (normal) against MNIST test (anomalous), and the reverse.

    python experiments/anomaly_fashion_vs_mnist.py --workdir runs/anomaly_fashion_mnist

Trains (or reuses) an AE and a VAE of configs/fashion_mnist.py (grayscale, Laplace decoder of
learned scale; `--epochs`, default 5) on each of fashion_mnist and mnist, into
WORKDIR/{ae,vae}_{fashion_mnist,mnist}; both datasets go through the same preparation, so
their scores are comparable. Scores both test sets with each model (`vae_jax.anomaly`: AE
reconstruction NLL; VAE reconstruction NLL, -ELBO and IWAE -log p(x) with `--k` samples) and
reports the AUROC with the other dataset as the anomalies. VAEs are known to give the simpler
dataset the *higher* likelihood whichever they were trained on (Nalisnick et al., 2019): an
AUROC below 0.5 says so. Writes into OUT (default WORKDIR/figures):
anomaly_fashion_vs_mnist.{md,csv}, score_histograms.png and extremes_<run>.png.
Other `--config.KEY=VALUE` arguments change both datasets' runs (e.g. the architecture).
"""

from __future__ import annotations

import _common  # pylint: disable=import-error
import _inline  # pylint: disable=import-error

METHODS = {"ae": ("rec",), "vae": ("rec", "neg_elbo", "iwae")}


def main():
  p = _common.parser(__doc__.splitlines()[0], "runs/anomaly_fashion_mnist")
  p.add_argument("--epochs", type=int, default=5, help="training epochs of each model")
  p.add_argument("--k", type=int, default=100, help="importance samples of the IWAE score")
  p.add_argument("--datasets", default="fashion_mnist,mnist", help="the two TFDS datasets")
  args = _common.parse(p)
  datasets = tuple(args.datasets.split(","))
  if len(datasets) != 2:
    _common.fail(f"--datasets={args.datasets!r}: expected two names separated by a comma")

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import fashion_mnist  # pylint: disable=g-import-not-at-top
  from vae_jax import anomaly, data as data_lib  # pylint: disable=g-import-not-at-top
  from vae_jax.plots import plt  # pylint: disable=g-import-not-at-top

  base = _inline.apply_overrides(fashion_mnist.get_config(), args.overrides)
  base.num_epochs = args.epochs
  data = {}
  for name in datasets:
    c = base.copy_and_resolve_references()
    c.data.name = name
    data[name] = data_lib.load(c.data)
  args.out.mkdir(parents=True, exist_ok=True)
  rows, hists = [], []
  for train_name in datasets:
    other = datasets[1 - datasets.index(train_name)]
    test_in, test_out = data[train_name].test_images, data[other].test_images
    images = np.concatenate([test_in, test_out])
    is_ood = np.r_[np.zeros(len(test_in), bool), np.ones(len(test_out), bool)]
    for kind in ("ae", "vae"):
      config = base.copy_and_resolve_references()
      config.model.name, config.data.name = kind, train_name
      run = f"{kind}_{train_name}"
      wd = _common.pathlib.Path(args.workdir) / run
      if args.no_train and not (wd / "results.json").exists():
        _common.fail(f"{wd} holds no finished run; run without --no_train")
      model = _inline.train_or_reuse(config, wd, data[train_name])
      cache = wd / f"ood_scores_k{args.k}.npz"
      if cache.exists():
        with np.load(cache) as f:
          scores = {m: f[m] for m in METHODS[kind]}
      else:
        scores = {m: anomaly.scores(model, images, m, key=jax.random.key(0), k=args.k)
                  for m in METHODS[kind]}
        np.savez(cache, **scores)
      for m, s in scores.items():
        auc = anomaly.auroc(s, is_ood)
        rows.append([train_name, other, kind.upper(), m, float(s[~is_ood].mean()),
                     float(s[is_ood].mean()), auc])
        print(f"train {train_name:<13} {kind} {m:<8} mean score in {rows[-1][4]:9.2f} "
              f"ood {rows[-1][5]:9.2f}  AUROC {auc:.3f}", flush=True)
      main_score = scores[anomaly.default_method(model)]
      hists.append((run, main_score[~is_ood], main_score[is_ood], train_name, other))
      anomaly.save_extremes(args.out / f"extremes_{run}.png", images, main_score,
                            title=f"{kind.upper()} trained on {train_name}: most (top) and least "
                            f"(bottom) anomalous of both test sets")

  m = base.model
  notes = (f"Normal: the test split of the training dataset; anomalous: the other dataset's "
           f"test split ({len(data[datasets[0]].test_labels):,} and "
           f"{len(data[datasets[1]].test_labels):,}). {m.architecture} "
           f"{m.conv_channels if m.architecture == 'conv' else m.hidden_sizes} + z={m.latent_dim}, "
           f"{m.likelihood} decoder (learned scale: {m.learn_scale}), binarisation "
           f"'{base.data.binarization}', {args.epochs} epochs. Scores in nats per image (higher = "
           f"more anomalous): rec = reconstruction NLL at the latent mean, neg_elbo = one-sample "
           f"-ELBO, iwae = IWAE -log p(x) with k={args.k}. AUROC < 0.5: the other dataset looks "
           "*more* normal than the training one.")
  paths = _inline.write_table(
      args.out, "anomaly_fashion_vs_mnist",
      ["trained on", "anomalies", "model", "score", "mean score (normal)",
       "mean score (anomalous)", "AUROC"], rows, "Anomaly detection across datasets", notes)

  fig, axes = plt.subplots(1, len(hists), figsize=(4 * len(hists), 3.2))
  for ax, (run, s_in, s_out, tr, ot) in zip(np.atleast_1d(axes), hists):
    lo, hi = np.percentile(np.r_[s_in, s_out], [0.5, 99.5])
    bins = np.linspace(lo, hi, 60)
    ax.hist(s_in, bins, alpha=0.6, label=f"{tr} test (normal)", density=True)
    ax.hist(s_out, bins, alpha=0.6, label=f"{ot} test (anomalous)", density=True)
    ax.set_title(run, fontsize=9)
    ax.set_xlabel("score (nats)")
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(args.out / "score_histograms.png", dpi=110)
  plt.close(fig)
  for path in (*paths, args.out / "score_histograms.png"):
    print(path)


if __name__ == "__main__":
  main()
