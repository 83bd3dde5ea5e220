"""The end of a run: what a finished member writes beyond its metrics.

`finish_member` assembles results.json (the last test metrics, the last epoch's training
metrics, timing and memory), draws the run's figures (`figures.run_figures`), adds the test
log-likelihood when `config.eval_nll_k > 0`, logs the figures and the summary to W&B and
prints one line. This is where the trainer meets the leaf packages (figures, analyses); the
training loop itself imports none of them.
"""

from __future__ import annotations

import pathlib

from flax import nnx

from vae_jax import rng, workdir as workdir_lib

_SUMMARY_KEYS = ("test/neg_elbo", "test/rec", "test/kl", "test/loss", "test/neg_iwae",
                 "disentanglement/mig_chen", "train/examples_per_s")
# Per-epoch training scalars that describe the last epoch, not the run: left out of results.
_EPOCH_ONLY = ("train/epoch", "train/seconds", "train/examples_per_s", "train/grad_norm")


def summary(results: dict) -> str:
  """The one line printed for a finished run."""
  return ", ".join(f"{k}={results[k]:.2f}" for k in _SUMMARY_KEYS
                   if isinstance(results.get(k), (int, float)))


def report_finished(workdir, config, is_main: bool) -> dict:
  """A relaunch of a finished run trains nothing: it prints the run's line and returns its
  results."""
  results = workdir_lib.read_results(workdir)
  if is_main:
    print(f"{workdir}: finished ({config.num_epochs} epochs); " + summary(results))
  return results


def finish_member(config, workdir: pathlib.Path, writer, *, failed: str | None, model,
                  test: dict, train: dict, timing: dict, dataset, is_main: bool) -> dict:
  """Writes a member's results.json (process 0 only) and returns its results.

  Args:
    model: (graphdef, params, rest) of the member's final float32 model (params None off
      process 0).
    test: the last evaluation's metrics, without the "test/" prefix.
    train: the last epoch's logged scalars ("train/..." keys).
    timing: the group's timing, memory and step counts (the same for every member).
  """
  if failed:
    res = {"failed": failed, "epochs": timing["epochs"],
           "members_trained_together": timing["members_trained_together"]}
    if is_main:
      workdir_lib.write_json(workdir / "results.json", res)
    return res
  res = {f"test/{k}": v for k, v in test.items()}
  res.update({k: v for k, v in train.items() if k.startswith("train/") and k not in _EPOCH_ONLY})
  res.update(timing)
  if is_main:
    trained = nnx.merge(*model)
    if config.write_figures:
      writer.log_images(timing["steps"], run_figures(config, workdir, trained, dataset))
    res.update(_test_nll(config, workdir, trained, dataset))
    if config.eval_disentanglement:
      from vae_jax.analysis import factors  # pylint: disable=g-import-not-at-top
      res.update(factors.disentanglement_metrics(trained, dataset, seed=config.seed,
                                                 sample_scale=config.disentanglement_sample_scale))
      print(f"{workdir}: " + ", ".join(f"{k.split('/')[1]}={res[k]:.3f}" for k in res
                                       if k.startswith("disentanglement/")
                                       and not k.endswith(("seed", "scale", "seconds"))))
    writer.summary({k: v for k, v in res.items() if isinstance(v, (int, float))})
    workdir_lib.write_json(workdir / "results.json", res)
    print(f"{workdir}: " + summary(res))
  return res


def run_figures(config, workdir, model, ds) -> dict[str, str]:
  """Reconstructions, samples and latents (and the manifold, in 2-D; the latent traversals, for
  a VAE) of the finished model, as PNGs in its workdir; returns {name: path}. The traversals
  are also written animated, traversals.gif beside traversals.png (not in the returned PNGs);
  on data with ground-truth factors their rows name the factor each unit carries
  (`analysis.factors.unit_factor_information`)."""
  from vae_jax import figures, latents  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  n = config.num_plot_images
  x = ds.test_images[:n]
  paths = {"reconstructions": figures.save_reconstructions(
      workdir / "reconstructions.png", x / 255.0, latents.reconstruct(model, x))}
  paths["samples"] = figures.save_samples(workdir / "samples.png", model,
                                          rng.samples_key(config.seed), 64,
                                          ds.images("train", slice(0, 10000)))
  # What colours the latent scatter: "digit", a factor's name, or nothing (unlabelled data).
  label_name = figures.latents.scatter_label_name(ds) or "label"
  paths.update(figures.save_latent_figures(workdir, model, ds.test_images, ds.test_labels,
                                           label_name))
  if config.model.name == "vae":
    from vae_jax import marginal_likelihood  # pylint: disable=g-import-not-at-top
    from vae_jax.figures import traversals  # pylint: disable=g-import-not-at-top
    stats = marginal_likelihood.posterior_stats(model, ds.test_images)
    score, name = ((stats["kl_per_dim"], "KL") if "kl_per_dim" in stats
                   else (stats["mean_variance"], "var"))
    info = None  # which ground-truth factor each unit carries (not for one class label)
    if len(ds.factor_sizes) > 1:
      from vae_jax.analysis import factors  # pylint: disable=g-import-not-at-top
      info = factors.unit_factor_information(model, ds)
    paths["traversals"] = traversals.save_traversals(workdir / "traversals.png", model,
                                                     ds.test_images[0], score, score_name=name,
                                                     max_units=24, unit_factor_info=info)
    if info is not None:  # how each factor moves the latents
      paths["factor_traversals"] = traversals.save_factor_traversals(
          workdir / "factor_traversals.png", model, factors.factor_traversal_images(ds), score)
  return paths


def _test_nll(config, workdir, model, ds) -> dict:
  """test/nll (IWAE, k = config.eval_nll_k) and latent statistics; {} when off or an AE."""
  k = config.eval_nll_k
  if k <= 0:
    return {}
  if config.model.name != "vae":
    print(f"{workdir}: eval_nll_k={k} skipped: an AE defines no likelihood p(x)")
    return {}
  from vae_jax import marginal_likelihood  # pylint: disable=g-import-not-at-top
  out = marginal_likelihood.test_metrics(model, ds.test_images, k, rng.nll_key(config.seed))
  print(f"{workdir}: test/nll={out['test/nll']:.2f} (IWAE, k={k}), test/bpd={out['test/bpd']:.4f}, "
        f"active units {out['test/active_units']}/{config.model.latent_dim}")
  return out
