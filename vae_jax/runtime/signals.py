"""Stop requests: SIGTERM or Ctrl-C finish the current epoch, checkpoint, and exit.

    with signals.StopRequests() as stop:
      for epoch in ...:
        ...
        if stop.signum is not None:
          raise signals.Interrupted(stop.signum, epoch + 1)

The first SIGTERM / SIGINT only records the request (`stop.signum`); the training loop
honours it after the epoch (in a multi-process run, every process after the same epoch:
`hosts.any_process`). A second Ctrl-C interrupts at once (`KeyboardInterrupt`). Handlers can
only be installed in the main thread; elsewhere (a notebook's worker thread) signals keep
their handlers and the block runs as it would without.
"""

from __future__ import annotations

import signal
import threading

from tqdm import tqdm

from vae_jax import errors


class Interrupted(errors.OneLineError):
  """SIGTERM or Ctrl-C arrived; a checkpoint of the last finished epoch was saved. Exits with
  128 + the signal's number, as a process killed by it would."""

  def __init__(self, signum: int, epoch: int, by_peer: bool = False):
    self.signum, self.epoch = signum, epoch
    self.exit_status = 128 + signum
    name = signal.Signals(signum).name
    got = "a signal reached another process of this run" if by_peer else f"{name} received"
    super().__init__(f"{got}: saved a checkpoint at epoch {epoch}; relaunch the same "
                     "command to resume")


class StopRequests:
  """Turns the first SIGTERM / SIGINT into a request the loop honours after the current epoch
  (checkpoint, then exit); a second SIGINT interrupts at once."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    tqdm.write(f"{signal.Signals(signum).name}: stopping after this epoch (checkpointing); "
               "Ctrl-C again to stop at once")

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
