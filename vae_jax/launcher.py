"""What `launch.py` runs: start the distributed runtime, validate, train (a run or a sweep).

A config file with a `get_sweep()` runs its whole sweep unless told otherwise:
  * `--member=NAME` runs one member alone (into DIR/NAME);
  * `--nosweep` runs the config itself, ignoring its sweep;
  * overriding a swept key on the command line (e.g. `--config.beta=4` for the beta sweep)
    pins it: a single run with that value (DIR as given; default runs/<config>/<member>).
Whatever ends a launch early ends in one line on stderr and an exit status, from one handler
(`main`, through `runtime.faults.report`): a user's mistake (`UserError`) or a machine's fault
2, divergence 3, a failed peer process 4, a stop request 128 + the signal. Validation happens
before any data is read or anything compiled, and no workdir is created for a config that
fails it.
"""

from __future__ import annotations

import os
import pathlib
import sys

from vae_jax.errors import UserError


_multi_process = False


def _fail(msg: str, code: int):
  if _multi_process:  # do not wait in JAX's shutdown for peers that may be waiting for us
    from vae_jax.runtime import hosts  # pylint: disable=g-import-not-at-top
    hosts.exit_now(msg, code)
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(code)


def main(**kwargs) -> None:
  """Runs what launch.py's flags ask for (`run`'s arguments); whatever ends it early ends in
  one line and an exit status (`runtime.faults.report`), or, for a bug, its traceback."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # Orbax logs every step of a save at INFO.
  from vae_jax import compilation_cache  # pylint: disable=g-import-not-at-top
  from vae_jax.runtime import faults  # pylint: disable=g-import-not-at-top
  compilation_cache.configure()  # persistent compilation cache: later launches skip compiling
  try:
    run(**kwargs)
  except BaseException as e:  # pylint: disable=broad-except  (the one top-level handler)
    reported = faults.report(e)
    if reported is None:
      raise
    _fail(*reported)


def run(*, config, config_path: str, workdir: str | None, allow_config_change: bool = False,
        distributed: bool = False, coordinator_address: str | None = None,
        num_processes: int | None = None, process_id: int | None = None,
        overrides: dict | None = None, member: str | None = None, use_sweep: bool = True,
        member_subdir: bool = False, export_wandb_sweep: str | None = None) -> None:
  """Starts the distributed runtime when asked, validates, then trains a run or a sweep (or
  exports the sweep for W&B)."""
  import jax  # pylint: disable=g-import-not-at-top
  global _multi_process
  if distributed or coordinator_address:
    from vae_jax.runtime import hosts  # pylint: disable=g-import-not-at-top
    try:
      hosts.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                       process_id=process_id)
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"could not start the distributed runtime ({type(e).__name__}: {e}); "
                      "check --coordinator_address, --num_processes and --process_id") from None
    _multi_process = jax.process_count() > 1

  from vae_jax import config as config_lib, sweeps, validate  # pylint: disable=g-import-not-at-top

  stem = pathlib.Path(config_path.split(":")[0]).stem
  validate.validate(config, num_devices=jax.device_count())
  arg = config_path.partition(":")[2] or None  # "file.py:ARG"'s ARG
  try:
    module = config_lib.load_module(config_path)
    sweep = sweeps.sweep_of(module, arg) if use_sweep else None
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (whatever the config file raises)
    raise UserError(f"config {config_path.split(':')[0]}: get_sweep() raised "
                    f"{type(e).__name__}: {' '.join(str(e).split())}") from None
  if export_wandb_sweep:
    if sweep is None:
      raise UserError(f"{config_path} defines no sweep (get_sweep) to export")
    spec = sweeps.wandb_sweep_spec(sweep, config_path=config_path,
                                   workdir=workdir or os.path.join("runs", stem), sweep_name=stem)
    sweeps.export_wandb_sweep(export_wandb_sweep, spec)
    print(f"wrote {export_wandb_sweep}: run `wandb sweep {export_wandb_sweep}`, then "
          "`wandb agent <sweep id>` on each machine")
    return
  if member is not None and sweep is None:
    raise UserError(f"--member={member!r} given but {config_path} runs no sweep "
                    "(it defines no get_sweep(), or --nosweep was passed)")
  pinned = sweeps.pinned_overrides(config, sweep, overrides or {}) if sweep is not None else {}
  if sweep is not None and member is None and not pinned:
    sweeps.expand(config, sweep)  # a bad sweep definition fails here, before anything runs

  from vae_jax import trainer  # pylint: disable=g-import-not-at-top  (Flax, Orbax, W&B: slow)
  if sweep is not None and (member is not None or not pinned):
    sweeps.run_sweep(config, sweep, workdir or os.path.join("runs", stem), sweep_name=stem,
                     only=member, allow_config_change=allow_config_change,
                     num_devices=jax.device_count(), pinned=pinned)
    return
  if workdir is None:
    workdir = os.path.join("runs", stem, *([sweeps.member_name(pinned)] if pinned else []))
  elif member_subdir:
    workdir = os.path.join(workdir, sweeps.member_name(pinned))
  if pinned:
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.wandb.group = config.wandb.group or stem
  trainer.train_and_evaluate(config, workdir, allow_config_change=allow_config_change)
