"""Agreement between the processes of a multi-host run, with bounded waits.

Every process runs the same program, so they make the same calls in the same order; each call
here is one agreement point:

  * `main_first(fn, what)`: process 0 runs `fn` (preparing a dataset, taking the workdir's
    lock), the others wait for its outcome and then run `fn` themselves (`others_too`) or not.
    A `UserError` on process 0 reaches every process as the same one line; a process 0 that
    never reports (dead, hung) ends the wait after `timeout_s` with a line saying so.
  * `any_process(flag)`: whether any process raised `flag` (a SIGTERM that reached one of
    them), so that all stop at the same epoch.

With one process both are plain calls. The outcomes travel through the coordination service
that `jax.distributed.initialize` starts (its key-value store), not through device collectives.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import Callable, TypeVar

import jax
import numpy as np

from vae_jax.errors import PeerFailed, UserError
from vae_jax.runtime import files

T = TypeVar("T")

_LEADER_EXIT_DELAY_S = 3.0  # see exit_now
DEFAULT_TIMEOUT_S = 1800  # preparing a large dataset from raw files can take a while
_calls = itertools.count()


def initialize(**kwargs) -> None:
  """`jax.distributed.initialize(**kwargs)`. If process 0 (which runs JAX's coordination
  service) dies, JAX ends every other process within seconds with its own fatal message
  ("Terminating process because the JAX distributed service detected fatal errors ... another
  task died"); Python's thread dumps are turned off so that this line is what one reads."""
  import faulthandler  # pylint: disable=g-import-not-at-top
  jax.distributed.initialize(**kwargs)
  if jax.process_count() > 1:
    faulthandler.disable()


def exit_now(message: str, code: int) -> None:
  """Prints `error: message` and ends the process at once. A multi-host process that fails
  alone must not wait in JAX's shutdown for peers that are waiting for it (or dead)."""
  sys.stdout.flush()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  if code > 128 and jax.process_count() > 1 and jax.process_index() == 0:
    # A stop by signal is agreed by every process after the same epoch, and each exits here
    # at about the same moment. Process 0 runs JAX's coordination service: leaving first
    # would make the others' agents find it gone and abort them (SIGABRT) before they exit
    # with their own status, so it lets them go first.
    time.sleep(_LEADER_EXIT_DELAY_S)
  os._exit(code)  # pylint: disable=protected-access


def _client():
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  return distributed.global_state.client


def main_first(fn: Callable[[], T], what: str, *, others_too: bool = True, share: bool = False,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> T | None:
  """Runs `fn` on process 0, then (after it succeeded) on the others when `others_too`; with
  `share`, the others get process 0's result instead (it must be JSON data)."""
  if jax.process_count() == 1:
    return fn()
  key = f"vae_jax/main_first/{next(_calls)}"
  client = _client()
  if jax.process_index() == 0:
    try:
      out = fn()
    except (UserError, files.DiskFull) as e:  # the same one line on every process
      client.key_value_set(key, "error:" + str(e))
      raise
    except BaseException as e:  # a crash on process 0 must not leave the others waiting
      client.key_value_set(key, f"error:process 0 failed to {what} ({type(e).__name__})")
      raise
    client.key_value_set(key, "ok:" + (json.dumps(out) if share else ""))
    return out
  try:
    status = client.blocking_key_value_get(key, int(timeout_s * 1000))
  except Exception as e:  # pylint: disable=broad-except  (deadline exceeded, coordinator gone)
    raise PeerFailed(f"waited {timeout_s:.0f} s for process 0 to {what} and heard nothing "
                     f"({type(e).__name__}); is it still running? Relaunch every process "
                     "to resume") from None
  if not status.startswith("ok:"):
    raise PeerFailed(f"process 0: {status.removeprefix('error:')}")
  if share:
    return json.loads(status.removeprefix("ok:"))
  return fn() if others_too else None


def any_process(flag: bool) -> bool:
  """Whether `flag` is true on any process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags = multihost_utils.process_allgather(np.array([int(bool(flag))], np.int32))
  return bool(np.asarray(flags).any())
