"""disentanglement_lib's metrics of a finished run, added to its results.json.

    python -m vae_jax.tools.disentanglement --workdir runs/dsprites_vae [--sample_scale 1.0]

Computes the β-VAE score, FactorVAE score, MIG, DCI (disentanglement, completeness,
informativeness), SAP, modularity and explicitness of the run's posterior means on its
dataset's ground-truth factors (`vae_jax.analysis.metrics`, with disentanglement_lib's sample
counts times `--sample_scale`), and for a VAE Chen et al.'s own MIG from the posteriors of the
whole training split ("mig_chen", `vae_jax.analysis.mig_chen`, 10,000 sample points per set
times `--sample_scale`), and writes them into DIR/results.json as "disentanglement/<name>"
(atomically). A metric that is undefined for the run (one factor, as MNIST's label, for the
β-VAE and FactorVAE scores, DCI disentanglement and modularity; mig_chen for an AE) gets no
number: its reason goes under "not_computed" in results.json, and a line says it.
`--config.eval_disentanglement=True` computes the same numbers at the end of training. Bad input
prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # pylint: disable=g-import-not-at-top

from vae_jax.errors import UserError, check_tool_arguments, fail  # pylint: disable=g-import-not-at-top


def disentanglement_of_workdir(workdir, *, sample_scale: float = 1.0, seed: int = 0,
                               dataset=None) -> dict:
  """Computes the metrics of a finished run and merges them into its results.json
  (`factors.merge_results`); returns them as `factors.disentanglement_metrics` does, with the
  reasons of the metrics not computed under "not_computed"."""
  from vae_jax import tools, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from vae_jax.analysis import factors  # pylint: disable=g-import-not-at-top
  if not sample_scale > 0:
    raise UserError(f"--sample_scale={sample_scale} is invalid: expected a number > 0")
  if seed < 0:
    raise UserError(f"--seed={seed} is invalid: expected an integer >= 0")
  _, model, ds, _ = tools.load_run(workdir, dataset=dataset)
  metrics = factors.disentanglement_metrics(model, ds, seed=seed, sample_scale=sample_scale)
  results = factors.merge_results(workdir_lib.read_results(workdir) or {}, metrics)
  workdir_lib.write_json(pathlib.Path(workdir) / "results.json", results)
  return metrics


_NOT_SCORES = ("seed", "sample_scale", "seconds", "mig_chen_seconds")


def main(argv):
  check_tool_arguments(argv, flags.FLAGS.workdir)
  f = flags.FLAGS
  try:
    m = disentanglement_of_workdir(f.workdir, sample_scale=f.sample_scale, seed=f.seed)
  except KeyboardInterrupt:
    fail("interrupted; results.json is unchanged")
  except Exception as e:  # pylint: disable=broad-except  (one line, or raised again)
    from vae_jax import tools  # pylint: disable=g-import-not-at-top
    tools.refuse(e)
  from vae_jax.analysis import factors  # pylint: disable=g-import-not-at-top
  scores = {k: v for k, v in m.items() if k != factors.NOT_COMPUTED}
  print(f"{f.workdir}: " + ", ".join(f"{k.split('/')[1]}={v:.3f}" for k, v in scores.items()
                                     if k.split("/")[1] not in _NOT_SCORES)
        + f" ({m['disentanglement/seconds']:.0f} s)")
  for line in factors.not_computed_lines(f.workdir, m):
    print(line)


def _define_flags():
  """Command-line flags, defined only when run as a program (modules stay importable together)."""
  flags.DEFINE_string("workdir", None, "A finished run's output folder.")
  flags.DEFINE_float("sample_scale", 1.0, "Multiplies every sample count of the metrics "
                     "(1 = disentanglement_lib's defaults; DCI then takes minutes on a CPU).")
  flags.DEFINE_integer("seed", 0, "Seed of the metrics' samples and classifiers.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
