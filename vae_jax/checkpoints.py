"""Orbax checkpoints of one run: parameters and optimiser state, stepped by epoch.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a kill
never leaves a half-written checkpoint behind; `latest_epoch` only sees finished ones.
"""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores {"params", "opt_state"} for one run under DIR/checkpoints."""

  def __init__(self, workdir, keep: int):
    path = pathlib.Path(workdir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._mngr = ocp.CheckpointManager(path, options=options)

  def all_epochs(self) -> list[int]:
    return list(self._mngr.all_steps())

  def latest_epoch(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, epoch: int, params, opt_state) -> None:
    state = {"params": params, "opt_state": opt_state}
    # Every process takes part in the save (Orbax coordinates them); only process 0 writes
    # the metadata. `force` so the final save happens even off the periodic schedule.
    self._mngr.save(epoch, args=ocp.args.StandardSave(state), force=True)

  def restore(self, epoch: int, params_like, opt_state_like):
    """Restores onto the shardings / shapes of the given templates."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                            {"params": params_like, "opt_state": opt_state_like})
    state = self._mngr.restore(epoch, args=ocp.args.StandardRestore(abstract))
    return state["params"], state["opt_state"]

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()
