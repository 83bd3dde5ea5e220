"""The end of a run: what a finished member writes beyond its metrics.

`finish_member` assembles results.json (the last test metrics, the last epoch's training
metrics, timing and memory), draws the run's figures (`figures.run_figures`), adds the test
log-likelihood when `config.eval_nll_k > 0`, logs the figures and the summary to W&B and
prints one line. This is where the trainer meets the leaf packages (figures, analyses); the
training loop itself imports none of them.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Callable

import numpy as np
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


NOT_COMPUTED = "not_computed"  # results.json: {key: why} of what this run does not define
_KL_TERMS = ("index_code_mi", "total_correlation", "dimwise_kl")


def undefined_quantities(config) -> dict[str, str]:
  """{results key: one-line reason} for the quantities `config`'s model family does not define,
  which a run therefore never reports (results.json records the reason under "not_computed",
  and metrics.jsonl / W&B get no number): an AE's KL, ELBO and likelihood; the terms of Chen et
  al.'s KL decomposition that the family lacks."""
  from vae_jax import models, step as step_lib  # pylint: disable=g-import-not-at-top
  family = models.family_of(config.model)
  out = {}
  if not family.stochastic:
    why = (f"an {family.title} has no q(z|x) or prior p(z), so no KL and no ELBO "
           "(its loss is test/rec)")
    out.update({k: why for k in ("test/kl", "test/neg_elbo", "train/kl", "train/neg_elbo")})
    if config.eval_nll_k > 0:
      out["test/nll"] = f"an {family.title} defines no likelihood p(x)"
  if config.kl_decomposition_points > 0:
    defined = step_lib.kl_decomposition_terms(config)
    for term in _KL_TERMS:
      if term in defined:
        continue
      if not family.stochastic:
        why = f"an {family.title} has no q(z|x) to decompose"
      elif family.latent_layers != 1:
        why = (f"defined for one latent layer; the {family.title}'s KL spans "
               f"{family.latent_layers}")
      else:
        why = (f"needs a factorised prior p(z) = prod_j p(z_j); the {family.title}'s is not "
               "(the index-code MI and total correlation are reported)")
      out[f"test/{term}"] = why
  return out


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
  undefined = undefined_quantities(config)
  res = {f"test/{k}": v for k, v in test.items()}
  res.update({k: v for k, v in train.items() if k.startswith("train/") and k not in _EPOCH_ONLY})
  res.update(timing)
  res = {k: v for k, v in res.items() if k not in undefined}
  if undefined:
    res[NOT_COMPUTED] = dict(undefined)
  if is_main:
    for key, why in undefined.items():
      if key.startswith("test/") and key != "test/kl":  # one line per question, not per split
        print(f"{workdir}: {key} not computed: {why}")
    trained = nnx.merge(*model)
    if config.write_figures:
      writer.log_images(timing["steps"], run_figures(config, workdir, trained, dataset))
    res.update(_test_nll(config, workdir, trained, dataset))
    if config.eval_disentanglement:
      from vae_jax.analysis import factors  # pylint: disable=g-import-not-at-top
      scores = factors.disentanglement_metrics(trained, dataset, seed=config.seed,
                                               sample_scale=config.disentanglement_sample_scale)
      factors.merge_results(res, scores)  # undefined metrics: no key, a reason in not_computed
      print(f"{workdir}: " + ", ".join(f"{k.split('/')[1]}={res[k]:.3f}" for k in res
                                       if k.startswith("disentanglement/")
                                       and not k.endswith(("seed", "scale", "seconds"))))
      for line in factors.not_computed_lines(workdir, scores):
        print(line)
    writer.summary({k: v for k, v in res.items() if isinstance(v, (int, float))})
    workdir_lib.write_json(workdir / "results.json", res)
    print(f"{workdir}: " + summary(res))
  return res


class _FigureInputs:
  """What the per-run figures draw from, each computed once when a figure first asks."""

  def __init__(self, config, workdir, model, ds):
    self.config, self.workdir, self.model, self.ds = config, pathlib.Path(workdir), model, ds

  @functools.cached_property
  def unit_scores(self) -> tuple[list, str]:
    """(score per latent unit, its name): the test split's mean KL per unit where the family
    has one in closed form, else the variance of each unit's posterior mean."""
    from vae_jax import marginal_likelihood  # pylint: disable=g-import-not-at-top
    stats = marginal_likelihood.posterior_stats(self.model, self.ds.test_images)
    if "kl_per_dim" in stats:
      return stats["kl_per_dim"], "KL"
    return stats["mean_variance"], "var"

  @functools.cached_property
  def unit_factors(self):
    """Which ground-truth factor each unit carries (`analysis.factors`); None for data with
    fewer than two factors (one class label)."""
    if len(self.ds.factor_sizes) <= 1:
      return None
    from vae_jax.analysis import factors  # pylint: disable=g-import-not-at-top
    return factors.unit_factor_information(self.model, self.ds)


def _reconstructions(f: _FigureInputs) -> dict[str, str]:
  from vae_jax import figures, latents  # pylint: disable=g-import-not-at-top
  x = f.ds.test_images[:f.config.num_plot_images]
  return {"reconstructions": figures.save_reconstructions(
      f.workdir / "reconstructions.png", x / 255.0, latents.reconstruct(f.model, x))}


def _samples(f: _FigureInputs) -> dict[str, str]:
  from vae_jax import figures  # pylint: disable=g-import-not-at-top
  return {"samples": figures.save_samples(f.workdir / "samples.png", f.model,
                                          rng.samples_key(f.config.seed), 64,
                                          f.ds.images("train", slice(0, 10000)))}


def _latents(f: _FigureInputs) -> dict[str, str]:
  """latents.png, and manifold.png for a 2-D latent space."""
  from vae_jax import figures  # pylint: disable=g-import-not-at-top
  # What colours the latent scatter: "digit", a factor's name, or nothing (unlabelled data).
  label_name = figures.latents.scatter_label_name(f.ds) or "label"
  return figures.save_latent_figures(f.workdir, f.model, f.ds.test_images, f.ds.test_labels,
                                     label_name)


def _traversals(f: _FigureInputs) -> dict[str, str]:
  """traversals.png (and traversals.gif beside it, not returned); on data with ground-truth
  factors its rows name the factor each unit carries."""
  from vae_jax.figures import traversals  # pylint: disable=g-import-not-at-top
  score, name = f.unit_scores
  return {"traversals": traversals.save_traversals(
      f.workdir / "traversals.png", f.model, f.ds.test_images[0], score, score_name=name,
      max_units=24, unit_factor_info=f.unit_factors)}


def _factor_traversals(f: _FigureInputs) -> dict[str, str]:
  """How each ground-truth factor moves the latents."""
  from vae_jax.analysis import factors  # pylint: disable=g-import-not-at-top
  from vae_jax.figures import traversals  # pylint: disable=g-import-not-at-top
  return {"factor_traversals": traversals.save_factor_traversals(
      f.workdir / "factor_traversals.png", f.model, factors.factor_traversal_images(f.ds),
      f.unit_scores[0])}


def _pseudo_inputs(f: _FigureInputs) -> dict[str, str]:
  """A VampPrior's learned pseudo-inputs u_k, the images whose posteriors make its prior."""
  from vae_jax.figures import grids  # pylint: disable=g-import-not-at-top
  u = np.asarray(f.model.pseudo_inputs()[:64])
  return {"pseudo_inputs": grids.save_grid(
      f.workdir / "pseudo_inputs.png", u, int(np.ceil(np.sqrt(len(u)))),
      f"{f.model.title}: the first {len(u)} of {f.model.num_components} pseudo-inputs u_k")}


@dataclasses.dataclass(frozen=True)
class RunFigure:
  """A per-run figure: `draw(inputs) -> {name: path}`, for the models and datasets `applies`
  accepts (`applies(model, ds)`; every one by default)."""
  draw: Callable[[_FigureInputs], dict[str, str]]
  applies: Callable[[Any, Any], bool] = lambda model, ds: True


# The figures a finished run writes, in this order; each asks the model's family what it has.
RUN_FIGURES: dict[str, RunFigure] = {
    "reconstructions": RunFigure(_reconstructions),
    "samples": RunFigure(_samples),
    "latents": RunFigure(_latents),
    # A prior to sweep: every stochastic family (an AE has none).
    "traversals": RunFigure(_traversals, lambda model, ds: model.stochastic),
    "factor_traversals": RunFigure(
        _factor_traversals, lambda model, ds: model.stochastic and len(ds.factor_sizes) > 1),
    "pseudo_inputs": RunFigure(_pseudo_inputs,
                               lambda model, ds: hasattr(model, "pseudo_inputs")),
}


def run_figures(config, workdir, model, ds) -> dict[str, str]:
  """The finished model's figures (`RUN_FIGURES` that apply to it and its data) as PNGs in its
  workdir; returns {name: path}: reconstructions, samples, latents (and the manifold, in 2-D),
  the latent traversals of a stochastic family (also written animated, traversals.gif beside
  traversals.png, not in the returned PNGs; on data with ground-truth factors their rows name
  the factor each unit carries, `analysis.factors.unit_factor_information`, and
  factor_traversals.png shows how each factor moves the units) and a VampPrior's
  pseudo-inputs."""
  inputs = _FigureInputs(config, workdir, model, ds)
  paths = {}
  for figure in RUN_FIGURES.values():
    if figure.applies(model, ds):
      paths.update(figure.draw(inputs))
  return paths


def _test_nll(config, workdir, model, ds) -> dict:
  """test/nll (IWAE, k = config.eval_nll_k) and latent statistics; {} when off or an AE."""
  k = config.eval_nll_k
  if k <= 0 or "test/nll" in undefined_quantities(config):  # an AE: said in finish_member
    return {}
  from vae_jax import marginal_likelihood  # pylint: disable=g-import-not-at-top
  out = marginal_likelihood.test_metrics(model, ds.test_images, k, rng.nll_key(config.seed))
  print(f"{workdir}: test/nll={out['test/nll']:.2f} (IWAE, k={k}), test/bpd={out['test/bpd']:.4f}, "
        f"active units {out['test/active_units']}/{config.model.latent_dim}")
  return out
