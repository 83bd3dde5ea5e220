"""How much of MNIST's class information 2-D and 10-D codes keep: AE and VAE against PCA.

    python experiments/dimensionality_reduction.py --workdir runs/dimred
    python experiments/dimensionality_reduction.py --workdir runs/quick --config.num_epochs=1
    python experiments/dimensionality_reduction.py --workdir runs/dimred --no_train

Unless --no_train, trains the sweep of configs/mnist_dimred.py through the launcher (finished
members are skipped): four MLP 784-400-z models of configs/mnist_vae.py (AE and VAE, z = 2
and 10, 10 epochs) into WORKDIR/{ae,vae}_z{2,10}; `--config.KEY=VALUE` arguments go to the
launcher. Then exports the latent means of every finished member (`vae_jax.tools.encode`:
WORKDIR/*/latents_{train,test}.npy with labels) and fits PCA of the pixels at the same
dimensions. On each code it trains a logistic regression and a 5-NN classifier on the train
split (standardised codes) and reports test accuracy. Writes into OUT (default
WORKDIR/figures): dimensionality_reduction.{md,csv} and codes_2d.png.
"""

from __future__ import annotations

import sys

import _common  # pylint: disable=import-error

CONFIG = "configs/mnist_dimred.py"
KINDS = ("ae", "vae")


def main():
  args = _common.parse(_common.parser(__doc__.splitlines()[0], "runs/dimred"))
  if not args.no_train:
    _common.launch(CONFIG, args.workdir, args.overrides, args.member)

  import numpy as np  # pylint: disable=g-import-not-at-top  (after training: keep it fast)
  from vae_jax.analysis import probes  # pylint: disable=g-import-not-at-top
  from vae_jax.figures.grids import plt, save_figure  # pylint: disable=g-import-not-at-top
  from vae_jax import models  # pylint: disable=g-import-not-at-top
  from vae_jax.tools import encode  # pylint: disable=g-import-not-at-top

  runs = {}
  for path, config in _common.finished_runs(args.workdir):
    family = models.family_name(config.model)  # a two-layer VAE saved as "vae" is not one
    if family not in KINDS:
      print(f"skipped {path}: not an AE or VAE", file=sys.stderr)
      continue
    runs[family, int(config.model.latent_dim)] = (path, config)
  if not runs:
    _common.fail(f"{args.workdir} holds no finished AE or VAE")
  dims = sorted({d for _, d in runs})
  first_wd, first = next(iter(runs.values()))
  data_cache = {}
  ds = _common.load_data(first.data, data_cache)
  x_train, y_train = encode.split_images(ds, "train")
  x_test, y_test = encode.split_images(ds, "test")
  codes = {}
  for (kind, dim), (wd, config) in sorted(runs.items()):
    if _common.load_data(config.data, data_cache) is not ds:
      _common.fail(f"{wd} was trained on other data than {first_wd}; the codes would not "
                   "compare")
    model = _common.load_model(wd, ds)
    encode.export_latents(wd, "both", dataset=ds, model=model)
    codes[kind.upper(), dim] = (np.load(wd / "latents_train.npy"),
                                np.load(wd / "latents_test.npy"))
  for dim in dims:
    mean, comps, _ = probes.pca(x_train / 255.0, dim)
    codes["PCA", dim] = (probes.pca_transform(x_train / 255.0, mean, comps),
                         probes.pca_transform(x_test / 255.0, mean, comps))

  rows = []
  for dim in dims:
    for method in ("PCA", "AE", "VAE"):
      if (method, dim) not in codes:
        print(f"z={dim:<3} {method:<4} skipped: no finished {method.lower()}_z{dim}",
              file=sys.stderr)
        continue
      z_tr, z_te = codes[method, dim]
      rows.append([dim, method, probes.logistic_accuracy(z_tr, y_train, z_te, y_test),
                   probes.knn_accuracy(z_tr, y_train, z_te, y_test, k=5)])
      print(f"z={dim:<3} {method:<4} logistic {rows[-1][2]:.4f}  5-NN {rows[-1][3]:.4f}",
            flush=True)
  pixels = probes.logistic_accuracy(x_train.reshape(len(x_train), -1) / 255.0, y_train,
                                    x_test.reshape(len(x_test), -1) / 255.0, y_test)
  rows.append([784, "pixels", pixels, "-"])
  m = first.model
  notes = (f"{ds.name} ({ds.binarization} binarisation); AE/VAE: MLP "
           f"{'-'.join(map(str, (x_train[0].size, *m.hidden_sizes)))}-z, "
           f"{m.likelihood} decoder, {_common.epochs_of(c for _, c in runs.values())}; codes = "
           f"latent means, standardised; classifiers fitted on the {len(y_train):,} train codes, "
           f"accuracy on the {len(y_test):,} test codes. Logistic regression: 500 full-batch "
           "Adam steps (lr 0.1, L2 1e-4). 5-NN: Euclidean, majority vote; PCA of the same pixels.")
  args.out.mkdir(parents=True, exist_ok=True)
  paths = _common.write_table(args.out, "dimensionality_reduction",
                              ["latent dim", "method", "logistic acc.", "5-NN acc."], rows,
                              "Dimensionality reduction: test accuracy of classifiers on codes",
                              notes)
  if 2 not in dims:
    print("codes_2d.png skipped: no finished run with a 2-D code", file=sys.stderr)
    for path in paths:
      print(path)
    return

  methods = [k for k in ("PCA", "AE", "VAE") if (k, 2) in codes]
  fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4.6))
  axes = np.atleast_1d(axes)
  for ax, method in zip(axes, methods):
    z = codes[method, 2][1]
    for d in range(10):
      sel = y_test == d
      ax.scatter(z[sel, 0], z[sel, 1], s=2, alpha=0.5, color=plt.get_cmap("tab10")(d),
                 label=str(d), rasterized=True, linewidths=0)
    ax.set_title(f"{method}: 2-D codes of the test set", fontsize=10)
  axes[-1].legend(title="digit", markerscale=5, fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), frameon=False)
  save_figure(fig, args.out / "codes_2d.png", dpi=110)  # whole or not at all
  for path in (*paths, args.out / "codes_2d.png"):
    print(path)


if __name__ == "__main__":
  main()
