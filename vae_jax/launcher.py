"""What `launch.py` runs: start the distributed runtime, validate, train, report.

A user's mistake (`UserError`) ends the process with one line on stderr and exit status 2;
divergence exits with 3. Validation happens before any data is read or anything compiled,
and no workdir is created for a config that fails it.
"""

from __future__ import annotations

import os
import pathlib
import sys

from vae_jax.errors import UserError


def _fail(msg: str, code: int = 2):
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(code)


def main(*, config, config_path: str, workdir: str | None, allow_config_change: bool = False,
         distributed: bool = False, coordinator_address: str | None = None,
         num_processes: int | None = None, process_id: int | None = None) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)  # Orbax logs every step of a save at INFO.

  try:
    if distributed or coordinator_address:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes, process_id=process_id)
  except Exception as e:  # pylint: disable=broad-except
    _fail(f"could not start the distributed runtime ({type(e).__name__}: {e}); check "
          "--coordinator_address, --num_processes and --process_id")

  from vae_jax import validate  # pylint: disable=g-import-not-at-top

  if workdir is None:
    workdir = os.path.join("runs", pathlib.Path(config_path).stem)
  try:
    validate.validate(config, num_devices=jax.device_count())
  except UserError as e:
    _fail(str(e))
  from vae_jax import train  # pylint: disable=g-import-not-at-top  (Flax, Orbax, W&B: slow)
  try:
    train.train_and_evaluate(config, workdir, allow_config_change=allow_config_change)
  except train.DivergenceError as e:
    _fail(str(e), code=3)
  except UserError as e:
    _fail(str(e))
  except KeyboardInterrupt:
    _fail("interrupted; relaunch the same command to resume from the last checkpoint", code=130)
