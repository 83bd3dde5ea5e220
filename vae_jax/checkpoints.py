"""Orbax checkpoints of one run: parameters and optimiser state, stepped by epoch.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a kill
never leaves a half-written checkpoint behind; `latest_epoch` only sees finished ones, and
temporary folders left by a kill are removed when the manager opens. A save that fails (a
full disk) removes its own temporary folder before it raises.

Saves are synchronous: a failure is raised by `save` itself, in the training loop, instead of
in a background thread at some later call. Every save and restore runs `contain.contained()`,
so a failed one leaves no read or write in flight and prints nothing; its exception is the
report.

A finished checkpoint can still be damaged later (a disk fault, a truncated copy): `restore`
then raises `Damaged`, and `quarantine` moves it out of the way into DIR/damaged/ (nothing is
deleted). `restore_newest` resumes a group of runs from the newest epoch that restores for
all of them.
"""

from __future__ import annotations

import pathlib
import shutil
from typing import Sequence

import jax
import orbax.checkpoint as ocp
from tqdm import tqdm

from vae_jax.errors import UserError
from vae_jax.runtime import contain, faults, files, hosts


class Damaged(UserError):
  """A checkpoint that exists but does not restore."""


def _reason(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


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
                                           read_only=read_only,
                                           enable_async_checkpointing=False)
    # Orbax reads every checkpoint's metadata here and logs the ones it cannot read; such a
    # checkpoint is named by `restore` when it is reached (`Damaged`), so those records wait
    # for the first restore or save: emitted after it succeeds, dropped when it finds damage.
    with contain.held_logs(emit=False) as self._opening_logs:
      self._mngr = ocp.CheckpointManager(self.path, options=options)

  def all_epochs(self) -> list[int]:
    return list(self._mngr.all_steps())

  def latest_epoch(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, epoch: int, params, opt_state) -> None:
    """Saves the state of `epoch`; every process takes part (Orbax coordinates them; process 0
    writes the metadata). A full disk is raised as `files.DiskFull` naming this folder, with
    no temporary folder left."""
    state = {"params": params, "opt_state": opt_state}
    need = sum(int(getattr(a, "nbytes", 0)) for a in jax.tree.leaves(state)) + (1 << 16)
    # A save that cannot fit is refused before Orbax starts it; every process takes part, so
    # they agree on refusing it.
    if hosts.any_process(files.lacks_space(self.path, need)):
      raise files.DiskFull(self.path / str(epoch), need)
    try:
      with contain.contained():
        # `force` so the final save happens even off the periodic schedule.
        self._mngr.save(epoch, args=ocp.args.StandardSave(state), force=True)
    except Exception as e:  # pylint: disable=broad-except  (re-raised, maybe as DiskFull)
      # What was free when the write failed (before its partial folder is removed).
      full = (files.DiskFull(self.path / str(epoch), need)
              if faults.is_disk_full(e) or files.lacks_space(self.path, need) else None)
      remove_partial(self.workdir)
      if full is not None:
        raise full from e
      raise
    self._opening_logs.emit()

  def restore(self, epoch: int, params_like, opt_state_like):
    """Restores onto the shardings / shapes of the given templates; `Damaged` when the
    checkpoint's files do not read back as a state of that structure."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                            {"params": params_like, "opt_state": opt_state_like})
    try:
      with contain.contained():
        state = self._mngr.restore(epoch, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except  (JSON, TensorStore, structure errors)
      self._opening_logs.drop()  # Orbax's own lines about this damage: `Damaged` names it
      raise Damaged(f"checkpoint of epoch {epoch} in {self.path} does not restore "
                    f"({_reason(e)})") from e
    self._opening_logs.emit()
    return state["params"], state["opt_state"]

  def quarantine(self, epoch: int) -> pathlib.Path:
    """Moves the checkpoint of `epoch` to DIR/damaged/; returns where it went."""
    dest = files.quarantine(self.path / str(epoch), self.workdir, name=f"checkpoint-{epoch}")
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


def restore_newest(ckpts: Sequence[Checkpointer], params_like, opt_state_like, *,
                   is_main: bool, name: str):
  """Restores the newest epoch that every checkpointer holds and that restores for all of
  them (the members of a vectorised group). A checkpoint that does not restore is named in
  one warning and moved to DIR/damaged/; checkpoints newer than the epoch resumed are
  dropped (they are recomputed). `name`: the run or group, for the message when none
  restores. Returns (epoch, [(params, opt_state)] per checkpointer), (0, []) for a fresh
  start; `Damaged` when checkpoints exist and none restores."""
  damaged = []
  while True:
    common = set.intersection(*[set(c.all_epochs()) for c in ckpts])
    if not common:
      break
    epoch, restored, bad = max(common), [], None
    for c in ckpts:
      try:
        restored.append(c.restore(epoch, params_like, opt_state_like))
      except Damaged as e:
        bad = (c, e)
        break
    if bad is None:
      for c in ckpts:
        c.delete_after(epoch)
      return epoch, restored
    c, e = bad
    where = hosts.main_first(lambda c=c, e=epoch: str(c.quarantine(e)),
                             "move a damaged checkpoint aside", others_too=False, share=True)
    c.reload()
    if is_main:
      tqdm.write(f"warning: {e}; moved it to {where}; trying an older one")
    damaged.append(f"epoch {epoch} of {c.workdir} (moved to {where})")
  if damaged:
    raise Damaged(f"no checkpoint of {name} restores (damaged: {'; '.join(damaged)}); "
                  "relaunch to train from scratch, or put back checkpoints from a backup")
  return 0, []
