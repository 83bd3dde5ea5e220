"""How much of MNIST's class information 2-D and 10-D codes keep: AE and VAE against PCA.

    python experiments/dimensionality_reduction.py --workdir runs/dimred

Trains (or reuses) four MLP 784-400-z models of configs/mnist_vae.py (AE and VAE, z = 2 and
10; `--epochs`, default 10) into WORKDIR/{ae,vae}_z{2,10}, exports their latent means
(`vae_jax.encode`: WORKDIR/*/latents_{train,test}.npy with labels), and fits PCA of the
pixels at the same dimensions. On each code it trains a logistic regression and a 5-NN
classifier on the train split (standardised codes) and reports test accuracy. Writes into
OUT (default WORKDIR/figures): dimensionality_reduction.{md,csv} and codes_2d.png.
"""

from __future__ import annotations

import _common  # pylint: disable=import-error
import _inline  # pylint: disable=import-error

DIMS = (2, 10)
KINDS = ("ae", "vae")


def main():
  p = _common.parser(__doc__.splitlines()[0], "runs/dimred")
  p.add_argument("--epochs", type=int, default=10, help="training epochs of each model")
  args = _common.parse(p)

  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import mnist_vae  # pylint: disable=g-import-not-at-top
  from vae_jax import data as data_lib, encode, probe  # pylint: disable=g-import-not-at-top
  from vae_jax.plots import plt  # pylint: disable=g-import-not-at-top

  base = _inline.apply_overrides(mnist_vae.get_config(), args.overrides)
  base.num_epochs = args.epochs
  ds = data_lib.load(base.data)
  x_train, y_train = encode.split_images(ds, "train")
  x_test, y_test = encode.split_images(ds, "test")
  codes = {}
  for kind in KINDS:
    for dim in DIMS:
      config = base.copy_and_resolve_references()
      config.model.name, config.model.latent_dim = kind, dim
      wd = _common.pathlib.Path(args.workdir) / f"{kind}_z{dim}"
      if args.no_train and not (wd / "results.json").exists():
        _common.fail(f"{wd} holds no finished run; run without --no_train")
      model = _inline.train_or_reuse(config, wd, ds)
      encode.export_latents(wd, "both", dataset=ds, model=model)
      codes[kind.upper(), dim] = (np.load(wd / "latents_train.npy"),
                                  np.load(wd / "latents_test.npy"))
  for dim in DIMS:
    mean, comps = probe.pca_fit(x_train / 255.0, dim)
    codes["PCA", dim] = (probe.pca_transform(x_train / 255.0, mean, comps),
                         probe.pca_transform(x_test / 255.0, mean, comps))

  rows = []
  for dim in DIMS:
    for method in ("PCA", "AE", "VAE"):
      z_tr, z_te = codes[method, dim]
      rows.append([dim, method, probe.logistic_accuracy(z_tr, y_train, z_te, y_test),
                   probe.knn_accuracy(z_tr, y_train, z_te, y_test, k=5)])
      print(f"z={dim:<3} {method:<4} logistic {rows[-1][2]:.4f}  5-NN {rows[-1][3]:.4f}",
            flush=True)
  pixels = probe.logistic_accuracy(x_train.reshape(len(x_train), -1) / 255.0, y_train,
                                   x_test.reshape(len(x_test), -1) / 255.0, y_test)
  rows.append([784, "pixels", pixels, "-"])
  notes = (f"{ds.name} ({ds.binarization} binarisation); AE/VAE: MLP "
           f"{'-'.join(map(str, (x_train[0].size, *base.model.hidden_sizes)))}-z, "
           f"{base.model.likelihood} decoder, {args.epochs} epochs; codes = latent means, "
           f"standardised; classifiers fitted on the {len(y_train):,} train codes, accuracy on "
           f"the {len(y_test):,} test codes. Logistic regression: 500 full-batch Adam steps "
           "(lr 0.1, L2 1e-4). 5-NN: Euclidean, majority vote; PCA of the same pixels.")
  args.out.mkdir(parents=True, exist_ok=True)
  paths = _inline.write_table(args.out, "dimensionality_reduction",
                              ["latent dim", "method", "logistic acc.", "5-NN acc."], rows,
                              "Dimensionality reduction: test accuracy of classifiers on codes",
                              notes)

  fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
  for ax, method in zip(axes, ("PCA", "AE", "VAE")):
    z = codes[method, 2][1]
    for d in range(10):
      sel = y_test == d
      ax.scatter(z[sel, 0], z[sel, 1], s=2, alpha=0.5, color=plt.get_cmap("tab10")(d),
                 label=str(d), rasterized=True, linewidths=0)
    ax.set_title(f"{method}: 2-D codes of the test set", fontsize=10)
  axes[-1].legend(title="digit", markerscale=5, fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), frameon=False)
  fig.tight_layout()
  fig.savefig(args.out / "codes_2d.png", dpi=110)
  plt.close(fig)
  for path in (*paths, args.out / "codes_2d.png"):
    print(path)


if __name__ == "__main__":
  main()
