"""A machine's faults as one line each: out of memory, out of disk, a lost peer process.

`report(exc)` is the launcher's one top-level handler: it turns an exception that ends a
command into (the one line, the exit status), or None for a bug (its traceback goes through).
What it knows about the run that failed (its config, workdirs, newest checkpoint) comes from
`during_run(...)`, which training wraps around its work: that attaches the run to any
exception leaving it, and handles nothing.

Faults are recognised by what the libraries raise, first by type and code:

  * a full disk: `files.DiskFull`, or an `OSError` whose errno is ENOSPC or EDQUOT;
  * out of memory: `MemoryError` (host), or `jax.errors.JaxRuntimeError` whose
    `error_code` is RESOURCE_EXHAUSTED (device);
  * a lost peer (multi-process runs only): a `JaxRuntimeError` whose `error_code` is
    UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED (the coordination service's view).

Where a library gives no structured form, `read_message` is the one place that reads an
exception's text (tests/test_fault_recognition.py has a case for each):
TensorStore (under Orbax) raises a full disk as a `ValueError` whose text carries the OS
error code; Gloo and NCCL report a connection a dead peer dropped with error code UNKNOWN;
and XLA or numpy state the size of a failed allocation only in words.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any, Iterator, Sequence

from vae_jax import errors
from vae_jax.runtime import files

# absl status codes (jax.errors.JaxRuntimeError.error_code).
_DEADLINE_EXCEEDED, _RESOURCE_EXHAUSTED, _ABORTED, _UNAVAILABLE = 4, 8, 10, 14
_PEER_CODES = (_UNAVAILABLE, _DEADLINE_EXCEEDED, _ABORTED)
_RUN = "vae_jax_run"  # the attribute `during_run` sets on an exception


def _chain(exc: BaseException) -> Iterator[BaseException]:
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    yield exc
    exc = exc.__cause__ or exc.__context__


# The one fallback on message text -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MessageSignals:
  """What an exception's message says where its type does not (see `read_message`)."""
  os_errno: int | None = None  # TensorStore: "... [os_error_code='28']"
  lost_connection: bool = False  # Gloo / NCCL: a collective's connection dropped
  requested_bytes: int | None = None  # "allocating 123 bytes", "Unable to allocate 7.4 GiB"


_OS_ERROR_CODE = re.compile(r"os_error_code\W{0,3}(\d+)")
_LOST_CONNECTION = re.compile(r"\b(Gloo|NCCL)\b.*\b(Connection (reset|closed|refused)|Broken pipe|"
                              r"Read error|Write error|timed out|unhandled system error)",
                              re.IGNORECASE | re.DOTALL)
_BYTES = re.compile(r"allocat\w*\s+(\d+)\s*bytes")
_SIZE = re.compile(r"allocat\w*\s+([\d.]+)\s*([KMGT])i?B")


def read_message(exc: BaseException) -> MessageSignals:
  """The one function that reads exception messages, for signals no library raises in a
  structured form. Every case has its test (tests/test_fault_recognition.py)."""
  text = str(exc)
  code = _OS_ERROR_CODE.search(text)
  size = None
  if m := _BYTES.search(text):
    size = int(m.group(1))
  elif m := _SIZE.search(text):
    size = int(float(m.group(1)) * 1024 ** ("KMGT".index(m.group(2)) + 1))
  return MessageSignals(os_errno=int(code.group(1)) if code else None,
                        lost_connection=bool(_LOST_CONNECTION.search(text)),
                        requested_bytes=size)


# Recognition ------------------------------------------------------------------------------


def _error_code(e: BaseException) -> int | None:
  import jax  # pylint: disable=g-import-not-at-top
  return e.error_code if isinstance(e, jax.errors.JaxRuntimeError) else None


def is_disk_full(exc: BaseException) -> bool:
  """A full disk (or quota) anywhere in the exception's chain."""
  return any(files.is_disk_full(e) or read_message(e).os_errno in files.DISK_FULL_ERRNOS
             for e in _chain(exc))


def is_out_of_memory(exc: BaseException) -> bool:
  return any(isinstance(e, MemoryError) or _error_code(e) == _RESOURCE_EXHAUSTED
             for e in _chain(exc))


def is_peer_failure(exc: BaseException) -> bool:
  """A collective or coordination call that failed because another process is gone."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return False
  return any(_error_code(e) in _PEER_CODES
             or (_error_code(e) is not None and read_message(e).lost_connection)
             for e in _chain(exc))


def requested_bytes(exc: BaseException) -> int | None:
  """The size of the allocation that failed, when the message says it."""
  return next((n for e in _chain(exc) if (n := read_message(e).requested_bytes)), None)


# The run a fault happened in ----------------------------------------------------------------


@dataclasses.dataclass
class Run:
  """What the one line says about the run a fault ended."""
  config: Any
  workdirs: Sequence[Any]

  def where(self) -> str:
    shown = ", ".join(str(w) for w in self.workdirs[:3])
    return shown + (" ..." if len(self.workdirs) > 3 else "")

  def kept(self) -> str | None:
    """The newest checkpoint every member has complete on disk, as the lines name it."""
    from vae_jax import checkpoints  # pylint: disable=g-import-not-at-top  (it imports this)
    epochs = [checkpoints.complete_epochs(w) for w in self.workdirs]
    if not epochs or not all(epochs):
      return None
    newest = min(max(e) for e in epochs)
    where = (f"{self.workdirs[0]}/checkpoints" if len(self.workdirs) == 1
             else "each member's checkpoints/")
    return f"epoch {newest} in {where}"


@contextlib.contextmanager
def during_run(config, workdirs: Sequence[Any]) -> Iterator[None]:
  """Attaches the run to an exception that leaves the block (for `report`); handles nothing."""
  try:
    yield
  except BaseException as e:
    if getattr(e, _RUN, None) is None:
      with contextlib.suppress(AttributeError, TypeError):  # a type that takes no attributes
        setattr(e, _RUN, Run(config, list(workdirs)))
    raise


# The one top-level handler ------------------------------------------------------------------


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


def _disk_full_line(exc: BaseException, run: Run | None) -> str:
  full = next((e for e in _chain(exc) if isinstance(e, files.DiskFull)), None)
  if full is not None:
    what = str(full)
  else:  # an OSError of the standard library, or TensorStore's text
    path = next((e.filename for e in _chain(exc) if isinstance(e, OSError) and e.filename),
                None)
    what = f"disk full while writing {path or (run.where() if run else 'a file')}"
  kept = run.kept() if run else None
  if kept:
    return (f"{what}; last good checkpoint: {kept} (intact), and no half-written checkpoint "
            "or file is left; free space (or lower keep_checkpoints) and relaunch the same "
            "command to resume")
  return (f"{what}; no half-written file is left; free space there and relaunch the same "
          "command")


def report(exc: BaseException) -> tuple[str, int] | None:
  """The one line and exit status for an exception that ends a command: a `OneLineError`
  (a user's mistake, divergence, a stop request, a failed peer), Ctrl-C, or a machine's
  fault; None for anything else (a bug: its traceback should go through)."""
  if isinstance(exc, errors.OneLineError):
    return str(exc), exc.exit_status
  if isinstance(exc, KeyboardInterrupt):
    return ("interrupted; relaunch the same command to resume from the last checkpoint",
            130)
  if not isinstance(exc, Exception):
    return None  # SystemExit and the like
  run = getattr(exc, _RUN, None)
  if is_disk_full(exc):
    return _disk_full_line(exc, run), errors.EXIT_USER_ERROR
  kept = run.kept() if run else None
  kept_text = (f"last good checkpoint: {kept} (intact)" if kept
               else "no checkpoint had been saved yet")
  if is_peer_failure(exc):
    first = next(e for e in _chain(exc) if _error_code(e) is not None)
    detail = " ".join(str(first).split())[:160]
    return (f"a collective with another process of this run failed ({detail}): that process "
            "probably died or was stopped; see its log, then relaunch every process with the "
            f"same command to resume ({kept_text})", errors.EXIT_PEER_FAILED)
  if is_out_of_memory(exc):
    asked = requested_bytes(exc)
    what = f" allocating {files.size_text(asked)}" if asked else ""
    host = any(isinstance(e, MemoryError) for e in _chain(exc))
    fields = (f"; it grows with {memory_fields(run.config, len(run.workdirs))}: lower these"
              if run else "")
    return (f"out of {'host' if host else 'device'} memory{what}{fields}; {kept_text}",
            errors.EXIT_USER_ERROR)
  if isinstance(exc, OSError):  # another fault of the machine's file system: name the path
    return (f"{exc.filename or 'a file'}: {exc.strerror or exc}; check that path and relaunch",
            errors.EXIT_USER_ERROR)
  return None


def divergence_message(config, workdir, bad_step: int, steps_per_epoch: int,
                       last_epoch: int | None) -> str:
  """The line for a run whose loss or gradients became NaN/Inf at `bad_step`; `last_epoch`:
  its newest checkpoint (kept)."""
  kept = (f"epoch {last_epoch} in {workdir}/checkpoints" if last_epoch
          else "none (diverged before the first save)")
  return (f"training diverged: loss or gradient became NaN/Inf at step {bad_step} (epoch "
          f"{bad_step // steps_per_epoch + 1}); last good checkpoint: {kept}; look at "
          f"learning_rate={config.learning_rate}, optimizer.grad_clip_norm="
          f"{config.optimizer.grad_clip_norm}, kl_warmup_steps={config.kl_warmup_steps}, "
          f"model.likelihood={config.model.likelihood!r}")
