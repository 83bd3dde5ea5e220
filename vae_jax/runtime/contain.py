"""Orbax's checkpoint I/O, contained: a save or restore that fails leaves nothing running and
nothing printed behind it; its exception is the one report.

Orbax runs a save or a restore as asyncio coroutines, one per array, on an event loop it
creates for the call (`asyncio.new_event_loop()`) and closes as soon as the first one fails,
with the others still reading or writing. Those then end against a closed loop, and reach
the user as screens of "Task exception was never retrieved", "Exception ignored in:
<coroutine ...>" and "Event loop is closed" tracebacks, in a race with the interpreter's
garbage collector. Orbax also logs a failed write with its traceback from its own thread
before it raises the error in the caller.

    with contain.contained() as logs:
      manager.restore(...)

  * Every event loop created inside the block (by any thread) cancels its outstanding tasks
    and waits for them, its async generators and its executor before it closes, as
    `asyncio.run` does on exit: no read or write outlives the call. A completion that
    TensorStore delivers from its own threads after that, for an operation whose task was
    cancelled, is dropped by the closed loop.
  * When the block raises, the threads it started are awaited (bounded) before it ends:
    Orbax commits each array handler's writes in a thread of its own and raises the first
    failure while the others may still be writing.
  * Orbax's log records (the "absl" logger) emitted inside the block are held: emitted when
    the block succeeds, dropped when it raises (the exception is reported once, by whoever
    handles it) or when the caller says they are superseded (`logs.drop()`).

asyncio offers one way to choose the loop that a library's `asyncio.new_event_loop()`
returns: the event loop policy. It is set for the block only and restored after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Iterator

_LOGGER = "absl"  # Orbax logs through absl
_lock = threading.RLock()


class _DrainingLoop(asyncio.SelectorEventLoop):
  """An event loop that, when closed, first ends what is still scheduled on it, and drops the
  completions that other threads deliver after that (TensorStore's, for an operation whose
  awaiting task was cancelled and awaited here) instead of raising "Event loop is closed" in
  their thread."""

  def call_soon_threadsafe(self, callback, *args, context=None):
    try:
      return super().call_soon_threadsafe(callback, *args, context=context)
    except RuntimeError:
      if self.is_closed():  # whoever waited for this result has been cancelled and awaited
        return None
      raise

  def close(self):
    if not self.is_closed() and not self.is_running():
      pending = [t for t in asyncio.all_tasks(self) if not t.done()]
      for t in pending:
        t.cancel()
      if pending:  # return_exceptions: every task's outcome is retrieved, none is "never retrieved"
        self.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
      self.run_until_complete(self.shutdown_asyncgens())
      self.run_until_complete(self.shutdown_default_executor())
    super().close()


class _Policy(asyncio.DefaultEventLoopPolicy):

  def new_event_loop(self):
    return _DrainingLoop()


class HeldLogs(logging.Filter):
  """Holds the records of one logger while installed; `emit()` or `drop()` them afterwards."""

  def __init__(self):
    super().__init__()
    self.records: list[logging.LogRecord] = []
    self._dropped = False

  def filter(self, record: logging.LogRecord) -> bool:
    self.records.append(record)
    return False

  def drop(self) -> None:
    """Discards the records held so far and any still to come (the caller reports what they
    were about in its own words)."""
    self.records.clear()
    self._dropped = True

  def emit(self) -> None:
    """Emits the records held (once)."""
    if self._dropped:
      return
    logger = logging.getLogger(_LOGGER)
    for record in self.records:
      logger.handle(record)
    self.records.clear()


@contextlib.contextmanager
def held_logs(emit: bool = True) -> Iterator[HeldLogs]:
  """Holds Orbax's log records for the block; emits them after it unless the block raises or
  drops them. `emit=False`: keeps them in the `HeldLogs` for its owner to emit or drop later."""
  held = HeldLogs()
  logger = logging.getLogger(_LOGGER)
  logger.addFilter(held)
  ok = False
  try:
    yield held
    ok = True
  finally:
    logger.removeFilter(held)
    if ok and emit:
      held.emit()


def _await_threads(before: set[threading.Thread], timeout_s: float) -> None:
  """Joins the threads started since `before` that are still running (bounded)."""
  deadline = time.monotonic() + timeout_s
  for t in threading.enumerate():
    if t not in before and t is not threading.current_thread():
      t.join(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def contained(timeout_s: float = 60.0) -> Iterator[HeldLogs]:
  """Runs the block's asyncio work on draining event loops and holds Orbax's log records
  (module docstring). When the block raises, the threads it started (Orbax runs each array
  handler's commit in one, and the first failure is raised while the others still write)
  are awaited first, for up to `timeout_s`, so that their failures are held too. Re-entrant."""
  with _lock, held_logs() as held:
    previous = asyncio.get_event_loop_policy()
    if isinstance(previous, _Policy):  # nested: the outer block restores
      yield held
      return
    asyncio.set_event_loop_policy(_Policy())
    before = set(threading.enumerate())
    try:
      yield held
    except BaseException:
      _await_threads(before, timeout_s)
      raise
    finally:
      asyncio.set_event_loop_policy(previous)
