"""Orbax checkpoints of one run: parameters and optimiser state, stepped by epoch.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a kill
never leaves a half-written checkpoint behind; `latest_epoch` only sees finished ones, and
temporary folders left by a kill or a full disk are removed when the manager opens.

A finished checkpoint can still be damaged later (a disk fault, a truncated copy): `restore`
then raises `Damaged`, and `quarantine` moves it out of the way into DIR/damaged/ (nothing is
deleted) so that the run can resume from the newest one that restores.
"""

from __future__ import annotations

import errno
import pathlib
import shutil
import time

import jax
import orbax.checkpoint as ocp

from vae_jax.errors import UserError


class DiskFull(OSError):
  """Not enough free space for a checkpoint (checked before writing it)."""

  def __init__(self, message: str):
    super().__init__(errno.ENOSPC, message)


class Damaged(UserError):
  """A checkpoint that exists but does not restore."""


def _reason(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def damaged_folder(workdir) -> pathlib.Path:
  """DIR/damaged: where damaged files of a run are moved, each with the time it was found."""
  return pathlib.Path(workdir) / "damaged"


def quarantine_path(workdir, name: str) -> pathlib.Path:
  stamp = time.strftime("%Y%m%d-%H%M%S")
  folder = damaged_folder(workdir)
  folder.mkdir(parents=True, exist_ok=True)
  path, n = folder / f"{name}.{stamp}", 1
  while path.exists():
    path, n = folder / f"{name}.{stamp}.{n}", n + 1
  return path


_PARTIAL = "*.orbax-checkpoint-tmp*"


def complete_epochs(workdir) -> list[int]:
  """The epochs with a complete checkpoint folder in DIR/checkpoints, read from the disk."""
  path = pathlib.Path(workdir) / "checkpoints"
  if not path.is_dir():
    return []
  return sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())


def remove_partial(workdir) -> None:
  """Removes checkpoint folders a crash or a full disk left half-written."""
  path = pathlib.Path(workdir) / "checkpoints"
  if path.is_dir():
    for p in path.glob(_PARTIAL):
      shutil.rmtree(p, ignore_errors=True)


class Checkpointer:
  """Saves and restores {"params", "opt_state"} for one run under DIR/checkpoints."""

  def __init__(self, workdir, keep: int, *, read_only: bool = False):
    self.workdir = pathlib.Path(workdir).absolute()
    self.path = self.workdir / "checkpoints"
    if self.path.exists() and not self.path.is_dir():
      raise UserError(f"{self.path} is a file, not a checkpoint folder; move it aside and "
                      "relaunch")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           cleanup_tmp_directories=not read_only,
                                           read_only=read_only)
    self._mngr = ocp.CheckpointManager(self.path, options=options)

  def all_epochs(self) -> list[int]:
    return list(self._mngr.all_steps())

  def latest_epoch(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, epoch: int, params, opt_state) -> None:
    from vae_jax import faults  # pylint: disable=g-import-not-at-top
    faults.quiet_reported_failures()  # in front of any hook installed since the launch
    state = {"params": params, "opt_state": opt_state}
    self._check_space(state)
    # Every process takes part in the save (Orbax coordinates them); only process 0 writes
    # the metadata. `force` so the final save happens even off the periodic schedule.
    self._mngr.save(epoch, args=ocp.args.StandardSave(state), force=True)

  def _check_space(self, state) -> None:
    """Refuses a save that cannot fit before Orbax starts it: a write that fails half way ends
    in Orbax's background threads. The state's own bytes are the estimate; every process takes
    part in a save, so they agree on refusing it."""
    from vae_jax import hosts  # pylint: disable=g-import-not-at-top
    need = sum(int(getattr(a, "nbytes", 0)) for a in jax.tree.leaves(state)) + (1 << 16)
    try:
      free = shutil.disk_usage(self.path).free
    except OSError:
      free = need  # cannot tell: let the write itself find out
    if hosts.any_process(free < need):
      raise DiskFull(f"No space left on device: a checkpoint needs {need / 2**20:.1f} MiB, "
                     f"{free / 2**20:.1f} MiB free under {self.path}")

  def restore(self, epoch: int, params_like, opt_state_like):
    """Restores onto the shardings / shapes of the given templates; `Damaged` when the
    checkpoint's files do not read back as a state of that structure."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                            {"params": params_like, "opt_state": opt_state_like})
    try:
      state = self._mngr.restore(epoch, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except  (JSON, TensorStore, structure errors)
      raise Damaged(f"checkpoint of epoch {epoch} in {self.path} does not restore "
                    f"({_reason(e)})") from e
    return state["params"], state["opt_state"]

  def quarantine(self, epoch: int) -> pathlib.Path:
    """Moves the checkpoint of `epoch` to DIR/damaged/; returns where it went."""
    dest = quarantine_path(self.workdir, f"checkpoint-{epoch}")
    shutil.move(str(self.path / str(epoch)), dest)
    self.reload()
    return dest

  def reload(self) -> None:
    """Lists the checkpoints on disk again (after another process changed them)."""
    self._mngr.reload()

  def delete_after(self, epoch: int) -> None:
    """Deletes the checkpoints newer than `epoch` (a group resumes from an older common one
    and recomputes them)."""
    for e in self.all_epochs():
      if e > epoch:
        self._mngr.delete(e)
    self._mngr.reload()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()
