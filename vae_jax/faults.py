"""A machine's faults as one line each: out of memory, out of disk, a lost peer process.

`translate(exc, ...)` turns an exception from training into a `UserError` naming what ran
out, how much was asked, which config fields drive it and what is intact, or returns None
when the exception is none of these (a bug: let its traceback through). The messages name
the config fields that set the size of what ran out, so the fix is a command-line override.

Orbax writes checkpoints in background threads and logs their failures with tracebacks before
re-raising them in the main thread; `quiet_reported_failures()` drops those log records for the
failures reported here in one line.
"""

from __future__ import annotations

import errno
import logging
import re
import sys
import threading

from vae_jax.errors import PeerFailed, UserError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "os_error_code='28'",
                   "os_error_code='122'")
_OOM_TEXT = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory")


class ResourceExhausted(UserError):
  """Device or host memory, or disk space, ran out."""


def _chain(exc: BaseException):
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    yield exc
    exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException) -> bool:
  return any((isinstance(e, OSError) and e.errno in _DISK_FULL)
             or any(t in str(e) for t in _DISK_FULL_TEXT) for e in _chain(exc))


def is_out_of_memory(exc: BaseException) -> bool:
  if is_disk_full(exc):  # TensorStore reports a full disk as RESOURCE_EXHAUSTED too
    return False
  return any(isinstance(e, MemoryError) or (type(e).__name__ in ("JaxRuntimeError", "XlaRuntimeError")
                                             and any(t in str(e) for t in _OOM_TEXT))
             for e in _chain(exc))


_PEER_TEXT = ("Gloo", "Connection reset", "Connection closed", "Broken pipe", "UNAVAILABLE",
              "DEADLINE_EXCEEDED", "coordination service", "NCCL")


def is_peer_failure(exc: BaseException) -> bool:
  """A collective or coordination call that failed because another process is gone."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return False
  return any(type(e).__name__ in ("JaxRuntimeError", "XlaRuntimeError")
             and any(t in str(e) for t in _PEER_TEXT) for e in _chain(exc))


def _size(n: int) -> str:
  for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{n} bytes"


def requested_bytes(exc: BaseException) -> int | None:
  """The size of the allocation that failed, when the message says it."""
  for e in _chain(exc):
    m = re.search(r"allocat\w*\s+(\d+)\s*bytes", str(e))
    if m:
      return int(m.group(1))
    m = re.search(r"allocat\w*\s+([\d.]+)\s*([KMGT])i?B", str(e))
    if m:
      return int(float(m.group(1)) * 1024 ** ("KMGT".index(m.group(2)) + 1))
  return None


def memory_fields(config, num_members: int) -> str:
  """The config fields that set how much memory training and evaluation take."""
  model = config.model
  sizes = (f"model.conv_channels={tuple(model.conv_channels)}" if model.architecture == "conv"
           else f"model.hidden_sizes={tuple(model.hidden_sizes)}")
  parts = [f"batch_size={config.batch_size}", f"eval_batch_size={config.eval_batch_size}", sizes,
           f"model.latent_dim={model.latent_dim}"]
  if getattr(config, "eval_nll_k", 0):
    parts.append(f"eval_nll_k={config.eval_nll_k}")
  if num_members > 1:
    parts.append(f"{num_members} sweep members trained together (run fewer with --member)")
  return ", ".join(parts)


def is_fault(exc: BaseException) -> bool:
  """Whether `translate` has a line for `exc`."""
  return is_disk_full(exc) or is_peer_failure(exc) or is_out_of_memory(exc)


def translate(exc: BaseException, *, config, num_members: int, workdir: str,
              kept: str | None) -> UserError | None:
  """One line for a machine's fault during a run into `workdir`; `kept` names the newest
  complete checkpoint (None: none saved yet). None for any other exception."""
  kept = (f"last good checkpoint: {kept} (intact)" if kept
          else "no checkpoint had been saved yet")
  if is_disk_full(exc):
    detail = next((e.strerror for e in _chain(exc) if isinstance(e, OSError)
                   and e.errno in _DISK_FULL and "needs" in str(e.strerror)), None)
    detail = f" ({detail.split(': ', 1)[1]})" if detail and ": " in detail else ""
    return ResourceExhausted(f"disk full while writing into {workdir}{detail}; {kept}, and no "
                             "half-written checkpoint is left; free space (or lower "
                             "keep_checkpoints) and relaunch the same command to resume")
  if is_peer_failure(exc):
    first = " ".join(str(next(e for e in _chain(exc) if any(t in str(e) for t in _PEER_TEXT))).split())
    return PeerFailed(f"a collective with another process of this run failed ({first[:160]}): "
                      "that process probably died or was stopped; see its log, then relaunch "
                      f"every process with the same command to resume ({kept})")
  if is_out_of_memory(exc):
    asked = requested_bytes(exc)
    what = f" allocating {_size(asked)}" if asked else ""
    host = any(isinstance(e, MemoryError) for e in _chain(exc))
    return ResourceExhausted(
        f"out of {'host' if host else 'device'} memory{what}; it grows with "
        f"{memory_fields(config, num_members)}: lower these; {kept}")
  return None


class _QuietFilter(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    text = record.getMessage()
    if exc is not None and (is_disk_full(exc) or is_out_of_memory(exc)):
      return False
    return not any(t in text for t in _DISK_FULL_TEXT)


def _is_closed_loop(kind, value) -> bool:
  return kind is RuntimeError and str(value) == "Event loop is closed"


def _quiet_hook(previous, exception_of):
  """`previous` (an exception hook), except for "Event loop is closed": TensorStore's callbacks
  of a checkpoint write that failed (a full disk) fire after Orbax closed their event loop, and
  that failure is reported in one line already."""
  def hook(*args):
    if not _is_closed_loop(*exception_of(*args)):
      previous(*args)
  hook._vae_jax_quiet = True  # pylint: disable=protected-access
  return hook


def quiet_reported_failures() -> None:
  """Drops Orbax's background-thread tracebacks for failures reported here in one line.

  Called at launch and again before each checkpoint save (something imported later, or a
  library's init, may have put its own hook in front)."""
  # sys.excepthook(type, value, tb); threading.excepthook(args) and sys.unraisablehook(args)
  # with args.exc_type and args.exc_value.
  for owner, name, exception_of in (
      (sys, "excepthook", lambda kind, value, tb: (kind, value)),
      (threading, "excepthook", lambda args: (args.exc_type, args.exc_value)),
      (sys, "unraisablehook", lambda args: (args.exc_type, args.exc_value))):
    previous = getattr(owner, name)
    if not getattr(previous, "_vae_jax_quiet", False):
      setattr(owner, name, _quiet_hook(previous, exception_of))
  for name in ("absl", "asyncio"):  # Orbax's own logs; its abandoned writer tasks
    logger = logging.getLogger(name)
    if not any(isinstance(f, _QuietFilter) for f in logger.filters):
      logger.addFilter(_QuietFilter())
