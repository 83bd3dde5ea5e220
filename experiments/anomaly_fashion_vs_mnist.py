"""Out-of-distribution detection across datasets: train on Fashion-MNIST, score Fashion-MNIST
test (normal) against MNIST test (anomalous), and the reverse.

    python experiments/anomaly_fashion_vs_mnist.py --workdir runs/anomaly_fashion_mnist
    python experiments/anomaly_fashion_vs_mnist.py --workdir runs/anomaly_fashion_mnist \
        --config.model.architecture=mlp --config.model.hidden_sizes="(400,)"   # the README's
    python experiments/anomaly_fashion_vs_mnist.py --workdir runs/quick --config.num_epochs=1
    python experiments/anomaly_fashion_vs_mnist.py --workdir runs/anomaly_fashion_mnist --no_train

Unless --no_train, trains the sweep of configs/anomaly_fashion_mnist.py through the launcher
(finished members are skipped): an AE and a VAE of configs/fashion_mnist.py (grayscale,
Laplace decoder of learned scale, 5 epochs) on each of fashion_mnist and mnist, into
WORKDIR/{ae,vae}_{fashion_mnist,mnist}; `--config.KEY=VALUE` arguments (e.g. the
architecture) go to the launcher and change every member. Both datasets go through the same
preparation, so their scores are comparable. Then scores both test sets with each finished
model (`vae_jax.analysis.anomaly`: AE reconstruction NLL; VAE reconstruction NLL, -ELBO and
IWAE -log p(x) with `--k` samples; cached in the run's ood_scores_k<K>.npz) and reports the
AUROC with the other dataset as the anomalies. VAEs are known to give the simpler dataset the
*higher* likelihood whichever they were trained on (Nalisnick et al., 2019): an AUROC below
0.5 says so. Writes into OUT (default WORKDIR/figures): anomaly_fashion_vs_mnist.{md,csv},
score_histograms.png and extremes_<run>.png.
"""

from __future__ import annotations

import pathlib
import sys

import _common  # pylint: disable=import-error

CONFIG = "configs/anomaly_fashion_mnist.py"
METHODS = {"ae": ("rec",), "vae": ("rec", "neg_elbo", "iwae")}


def dataset_names(workdir: str, runs) -> list[str]:
  """The sweep's datasets: those of the finished runs and of every member sweep.csv lists
  (finished or not), so a model's anomalies are known before the other pair has trained."""
  from vae_jax import sweep_table  # pylint: disable=g-import-not-at-top
  names = {c.data.name for _, c in runs}
  csv_path = pathlib.Path(workdir) / "sweep.csv"
  if csv_path.exists():
    names |= {r["data.name"] for r in sweep_table.read_csv(csv_path) if r.get("data.name")}
  return sorted(names)


def main():
  p = _common.parser(__doc__.splitlines()[0], "runs/anomaly_fashion_mnist")
  p.add_argument("--k", type=int, default=100, help="importance samples of the IWAE score")
  args = _common.parse(p)
  if not args.no_train:
    _common.launch(CONFIG, args.workdir, args.overrides, args.member)

  import jax  # pylint: disable=g-import-not-at-top  (after training: keep it fast)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vae_jax.analysis import anomaly  # pylint: disable=g-import-not-at-top
  from vae_jax.figures.grids import plt, save_figure  # pylint: disable=g-import-not-at-top
  from vae_jax.runtime import files  # pylint: disable=g-import-not-at-top

  runs = {}
  for path, config in _common.finished_runs(args.workdir):
    if config.model.name not in METHODS:
      print(f"skipped {path}: not an AE or VAE", file=sys.stderr)
      continue
    runs[config.data.name, config.model.name] = (path, config)
  if not runs:
    _common.fail(f"{args.workdir} holds no finished AE or VAE")
  datasets = dataset_names(args.workdir, runs.values())
  if len(datasets) != 2:
    _common.fail(f"{args.workdir}: expected runs on two datasets, found "
                 f"{', '.join(datasets) or 'none'}")

  # Each test split as a run trained on that dataset prepared it; for a dataset none has
  # finished on, another run's preparation with only the name changed (manual_dir unset:
  # the saved one is the other dataset's folder of raw files).
  data_cache = {}
  data_config = {name: c.data for (name, _), (_, c) in runs.items()}
  some = next(iter(runs.values()))[1].data
  data = {name: _common.load_data(data_config[name], data_cache) if name in data_config
          else _common.load_data(some, data_cache, name=name, manual_dir=None)
          for name in datasets}
  args.out.mkdir(parents=True, exist_ok=True)
  rows, hists = [], []
  for train_name in datasets:
    other = datasets[1 - datasets.index(train_name)]
    test_in, test_out = data[train_name].test_images, data[other].test_images
    images = np.concatenate([test_in, test_out])
    is_ood = np.r_[np.zeros(len(test_in), bool), np.ones(len(test_out), bool)]
    for kind in ("ae", "vae"):
      if (train_name, kind) not in runs:
        print(f"skipped {kind}_{train_name}: no finished run", file=sys.stderr)
        continue
      wd = runs[train_name, kind][0]
      run = f"{kind}_{train_name}"
      model = _common.load_model(wd, data[train_name])
      cache = wd / f"ood_scores_k{args.k}.npz"
      if cache.exists():
        with np.load(cache) as f:
          scores = {m: f[m] for m in METHODS[kind]}
      else:
        scores = {m: anomaly.scores(model, images, m, key=jax.random.key(0), k=args.k)
                  for m in METHODS[kind]}
        files.save_npz(cache, **scores)  # whole or not at all
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

  configs = [c for _, c in runs.values()]
  base = runs.get((datasets[0], "vae"), next(iter(runs.values())))[1]
  m = base.model
  notes = (f"Normal: the test split of the training dataset; anomalous: the other dataset's "
           f"test split ({len(data[datasets[0]].test_labels):,} and "
           f"{len(data[datasets[1]].test_labels):,}). {m.architecture} "
           f"{m.conv_channels if m.architecture == 'conv' else m.hidden_sizes} + z={m.latent_dim}, "
           f"{m.likelihood} decoder (learned scale: {m.learn_scale}), binarisation "
           f"'{base.data.binarization}', {_common.epochs_of(configs)}. Scores in nats per image "
           f"(higher = more anomalous): rec = reconstruction NLL at the latent mean, neg_elbo = "
           f"one-sample -ELBO, iwae = IWAE -log p(x) with k={args.k}. AUROC < 0.5: the other "
           "dataset looks *more* normal than the training one.")
  paths = _common.write_table(
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
  save_figure(fig, args.out / "score_histograms.png", dpi=110)  # whole or not at all
  for path in (*paths, args.out / "score_histograms.png"):
    print(path)


if __name__ == "__main__":
  main()
