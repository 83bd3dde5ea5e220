"""Test log-likelihood of a finished run, added to its results.json.

    python -m vae_jax.tools.nll --workdir runs/vae30 --k 5000

Computes the k-sample importance-weighted bound on log p(x) over the whole test split (see
`vae_jax/marginal_likelihood.py`) and writes "test/nll", "test/nll_k", "test/nll_stderr", "test/bpd",
"test/active_units", "test/kl_per_dim" and "test/nll_seconds" into DIR/results.json
(atomically). Bad input prints one line on stderr and exits with status 2.

A run still training (or stopped before its last epoch) is estimated only at a checkpoint
named with `--epoch N`, and then only printed: its results.json is the launcher's to write.
This is how to follow a long run, e.g. the IWAE table's rows, while it trains. So is an older
checkpoint of a finished run: results.json holds the numbers of its last epoch only.
"""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # pylint: disable=g-import-not-at-top

from vae_jax.errors import UserError, check_tool_arguments, fail  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished run's output folder.")
_K = flags.DEFINE_integer("k", 5000, "Importance samples per test image (IWAE k >= 1).")
_SEED = flags.DEFINE_integer("seed", None, "PRNG seed of the estimate; default the run's seed.")
_SAMPLE_CHUNK = flags.DEFINE_integer(
    "sample_chunk", None, "Samples per step (memory knob); default by backend, see marginal_likelihood.py.")
_IMAGE_CHUNK = flags.DEFINE_integer(
    "image_chunk", None, "Images per step (memory knob); default by backend, see marginal_likelihood.py.")
_EPOCH = flags.DEFINE_integer(
    "epoch", None, "Checkpoint to evaluate; default the newest. Required for an unfinished run, "
    "whose estimate is printed and not written to results.json.")


def nll_of_workdir(workdir, k: int, *, seed: int | None = None, sample_chunk: int | None = None,
                     image_chunk: int | None = None, epoch: int | None = None,
                     progress: bool = False, dataset=None) -> dict:
  """Computes the test NLL metrics of a run's checkpoint; a finished run's go into results.json.

  Returns the metrics (added to results.json when the run is finished). Raises `UserError` on
  bad input (no run, an unfinished run without `epoch`, an AE, no such checkpoint).
  `dataset`: the run's `data.Dataset` when already loaded (else loaded from its config).
  """
  return _estimate(workdir, k, seed=seed, sample_chunk=sample_chunk, image_chunk=image_chunk,
                   epoch=epoch, progress=progress, dataset=dataset)[0]


def _estimate(workdir, k: int, *, seed, sample_chunk, image_chunk, epoch, progress,
              dataset=None) -> tuple[dict, bool]:
  """(metrics, whether they were written to results.json, i.e. the run is finished)."""
  import jax  # pylint: disable=g-import-not-at-top
  from vae_jax import marginal_likelihood, models, rng, tools, workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  for name, v in (("k", k), ("sample_chunk", sample_chunk), ("image_chunk", image_chunk)):
    if v is not None and v < 1:
      raise UserError(f"--{name}={v} is invalid: expected an integer >= 1")
  if not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir} does not exist")
  config = workdir_lib.read_config(workdir)
  if not models.family_of(config.model).stochastic:
    raise UserError(f"{workdir} holds an AE (model.name={config.model.name!r}): a deterministic "
                    "autoencoder defines no likelihood p(x), so there is no test/nll to compute")
  finished = workdir_lib.is_finished(workdir, config)
  if not finished and epoch is None:
    kept = sorted(int(p.name) for p in pathlib.Path(workdir, "checkpoints").glob("*")
                  if p.name.isdigit())
    raise UserError(f"{workdir} holds an unfinished run (results.json missing or short of "
                    f"num_epochs={config.num_epochs}): relaunch it to finish training, or pass "
                    f"--epoch N to estimate one of its checkpoints (kept: {kept or 'none'}) "
                    "without writing results.json")
  config, model, ds, evaluated = tools.load_run(workdir, epoch=epoch, dataset=dataset,
                                                require_finished=False)
  # results.json holds the finished run's numbers: those of its last epoch, not of an older
  # checkpoint named with --epoch (printed only).
  final = finished and evaluated == config.num_epochs
  key = rng.nll_key(config.seed if seed is None else seed)
  metrics = marginal_likelihood.test_metrics(model, ds.test_images, k, key, sample_chunk=sample_chunk,
                                    image_chunk=image_chunk, progress=progress)
  metrics["test/nll_device"] = str(jax.devices()[0].device_kind)
  if final:
    workdir_lib.update_results(workdir, metrics)
  return metrics, final


def main(argv):
  check_tool_arguments(argv, _WORKDIR.value)
  try:
    m, finished = _estimate(_WORKDIR.value, _K.value, seed=_SEED.value,
                         sample_chunk=_SAMPLE_CHUNK.value, image_chunk=_IMAGE_CHUNK.value,
                         epoch=_EPOCH.value, progress=True)
  except KeyboardInterrupt:
    fail("interrupted; results.json is unchanged")
  except Exception as e:  # pylint: disable=broad-except  (one line, or raised again)
    from vae_jax import tools  # pylint: disable=g-import-not-at-top
    tools.refuse(e)
  units = (f"{m['test/active_units']} (z1), {m['test/active_units_top']} (z2)"
           if "test/active_units_top" in m else
           f"{m['test/active_units']}/{len(m['test/kl_per_dim'])}" if "test/kl_per_dim" in m
           else f"{m['test/active_units']}")
  where = ("" if finished else
           f" at epoch {_EPOCH.value} (printed only; results.json unchanged)")
  print(f"{_WORKDIR.value}: test/nll={m['test/nll']:.2f} ± {m['test/nll_stderr']:.2f} "
        f"(k={m['test/nll_k']}), test/bpd={m['test/bpd']:.4f}, active units={units}, "
        f"{m['test/nll_seconds']:.0f} s{where}")


if __name__ == "__main__":
  app.run(main)
