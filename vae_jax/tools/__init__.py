"""Commands on finished workdirs, run as `python -m vae_jax.tools.<name> --workdir DIR`:
`nll` (the IWAE estimate of the test log-likelihood), `encode` (latent means and labels as
.npy), `denoise` (denoising metrics and figure), `disentanglement` (disentanglement_lib's
metrics). Nothing in the library imports them.

What they share is here. Each evaluates the run that is in DIR, rebuilt from DIR/config.json
(never a config file or the defaults in its place), and says so first, in one line
(`describe`): "runs/x: vae, mlp 784-400-20, mnist, objective elbo, epoch 30 of 30". A run
they cannot evaluate (no config.json, unfinished, no checkpoint) and a fault of the machine (a
full disk) end them with one line on stderr and exit status 2 (`refuse`), never a traceback.
"""

from __future__ import annotations

import math
import pathlib
import sys
from typing import NoReturn


def describe(workdir, config, epoch: int | None, image_shape=None) -> str:
  """The line that says which run a tool evaluates, from the run's saved `config`:
  "<workdir>: <model>, <architecture> <input>-<widths>-<latent>, <data>, objective <name>[
  beta=<b>], epoch <e> of <num_epochs>". `image_shape`: the data's (H, W, C), for the input
  size; `epoch`: the checkpoint evaluated."""
  m = config.model
  shape = tuple(image_shape) if image_shape is not None else None
  if m.architecture == "conv":
    widths = [("x".join(map(str, shape)) if shape else "image"), *map(str, m.conv_channels)]
  else:
    widths = [str(math.prod(shape)) if shape else "image",
              *map(str, m.hidden_sizes)]
  net = f"{m.architecture} {'-'.join([*widths, str(m.latent_dim)])}"
  from vae_jax.models import family_name, two_layer  # pylint: disable=g-import-not-at-top
  if family_name(m) == two_layer.NAME:  # in either spelling
    net += f" + z2 {m.top_latent_dim}"
  objective = f"objective {config.objective}"
  if float(config.beta) != 1.0:
    objective += f" beta={config.beta:g}"
  at = f"epoch {epoch} of {config.num_epochs}" if epoch is not None else (
      f"{config.num_epochs} epochs")
  return f"{workdir}: {m.name}, {net}, {config.data.name}, {objective}, {at}"


def checkpoint_epochs(workdir) -> list[int]:
  """The epochs of the checkpoints in DIR/checkpoints (Orbax names each folder by its epoch;
  a save in progress and DIR/damaged/ are not listed)."""
  folder = pathlib.Path(workdir) / "checkpoints"
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def load_run(workdir, *, epoch: int | None = None, require_finished: bool = True,
             dataset=None):
  """`workdir.load_run` (the run's saved config, model and data; one-line `UserError`s for no
  run, an unfinished run, no such checkpoint), then prints `describe` once. Returns (config,
  model, dataset, the epoch evaluated)."""
  from vae_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config, model, ds = workdir_lib.load_run(workdir, epoch=epoch, dataset=dataset,
                                           require_finished=require_finished)
  if epoch is None:  # load_run restores the newest checkpoint
    epoch = max(checkpoint_epochs(workdir), default=None)
  print(describe(workdir, config, epoch, ds.image_shape), flush=True)
  return config, model, ds, epoch


def refuse(e: Exception) -> NoReturn:
  """Ends a tool for an exception: a `UserError` (bad input, a run it cannot evaluate) or a
  fault of the machine (a full disk: `runtime.files.DiskFull` names the file) as one line on
  stderr and its exit status (`runtime.faults.report`, the launcher's own wording); anything
  else (a bug) is raised again, with its traceback."""
  from vae_jax.runtime import faults  # pylint: disable=g-import-not-at-top
  reported = faults.report(e)
  if reported is None:
    raise e
  print(f"error: {reported[0]}", file=sys.stderr, flush=True)
  sys.exit(reported[1])
