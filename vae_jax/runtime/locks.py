"""One writer per workdir: an OS lock on DIR/lock, held for as long as a process trains into DIR.

    with locks.hold([workdir]):      # UserError naming the holder when another process has it
      ...
    with locks.held_by_process_0(workdirs):  # the same, in a multi-process run
      ...

The lock is `fcntl.flock` on DIR/lock, so it dies with its process: a run killed with kill -9
leaves a file behind but no lock, and the relaunch takes it. The file records who holds it
(pid, host, command, time) so that a refused launch can say which process to look at. On a
shared file system the lock is as good as the file system's `flock` (NFSv4 and Lustre carry it
between hosts). Locks are per process and re-entrant: a sweep locks its members, and training
them takes the same locks again without blocking itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import socket
import sys
import time
from typing import Iterable, Iterator

import jax

from vae_jax.errors import UserError
from vae_jax.runtime import files, hosts

LOCK_FILE = "lock"

_held: dict[pathlib.Path, list] = {}  # resolved workdir -> [open file, count, created it]


class Locked(UserError):
  """Another process trains into the workdir."""


def _holder(path: pathlib.Path) -> str:
  try:
    info = json.loads(path.read_text())
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["time"]))
    return f"pid {info['pid']} on host {info['host']} (since {since}: {info['command']})"
  except (OSError, ValueError, KeyError, TypeError):
    return "another process (its lock file names none yet)"


def make_workdir(workdir: str | os.PathLike) -> pathlib.Path:
  """Creates `workdir` (and its parents); a one-line `UserError` when it cannot be a folder."""
  workdir = pathlib.Path(workdir)
  if workdir.is_dir():
    return workdir
  for p in (workdir, *workdir.parents):
    if p.exists() and not p.is_dir():
      raise UserError(f"workdir {workdir}: {p} is a file, not a folder; give a folder that is "
                      "new or holds a run")
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    if files.is_disk_full(e):
      raise files.DiskFull(workdir) from None
    raise UserError(f"cannot create workdir {workdir}: {e.strerror}") from None
  return workdir


def acquire(workdir: str | os.PathLike) -> None:
  """Locks `workdir` (creating it) for this process; `Locked` if another process holds it."""
  workdir = pathlib.Path(workdir)
  created = not workdir.exists()
  make_workdir(workdir)
  key = workdir.resolve()
  if key in _held:
    _held[key][1] += 1
    return
  path = workdir / LOCK_FILE
  try:
    f = open(path, "a+")  # never truncates: a refused launch leaves the holder's record alone
  except OSError as e:
    raise UserError(f"cannot lock {workdir}: {e.strerror} ({path})") from None
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.close()
    raise Locked(f"{workdir} is in use by {_holder(path)}; wait for it to finish or stop it, "
                 "or use another --workdir") from None
  record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
                       "command": " ".join(sys.argv)[:300]})
  os.ftruncate(f.fileno(), 0)
  try:  # unbuffered, so that nothing is left to flush when the file closes
    os.write(f.fileno(), record.encode())
  except OSError:  # a full disk: the lock holds without its record (refusals name no holder)
    os.ftruncate(f.fileno(), 0)
  _held[key] = [f, 1, created]


def release(workdir: str | os.PathLike) -> None:
  key = pathlib.Path(workdir).resolve()
  entry = _held.get(key)
  if entry is None:
    return
  entry[1] -= 1
  if entry[1] == 0:
    del _held[key]
    if entry[2]:  # a launch that failed before writing anything leaves no workdir behind
      with contextlib.suppress(OSError):
        if [p.name for p in key.iterdir()] == [LOCK_FILE]:
          os.unlink(key / LOCK_FILE)
          os.rmdir(key)
    entry[0].close()  # closing releases the flock; the file stays as a record


def is_held_here(workdir: str | os.PathLike) -> bool:
  return pathlib.Path(workdir).resolve() in _held


def acquire_all(workdirs: Iterable[str | os.PathLike]) -> None:
  """Locks every workdir, or none of them (the first refusal is raised)."""
  taken = []
  try:
    for w in workdirs:
      acquire(w)
      taken.append(w)
  except BaseException:
    release_all(taken)
    raise


def release_all(workdirs: Iterable[str | os.PathLike]) -> None:
  for w in reversed(list(workdirs)):
    release(w)


@contextlib.contextmanager
def held_by_process_0(workdirs: Iterable[str | os.PathLike]) -> Iterator[None]:
  """`hold` for every process of a run: process 0 takes the locks (the others learn whether it
  could, and stop with its line if not), so that no second launch trains into the workdirs."""
  workdirs = list(workdirs)
  hosts.main_first(lambda: acquire_all(workdirs), "lock the workdirs", others_too=False)
  try:
    yield
  finally:
    if jax.process_index() == 0:
      release_all(workdirs)


@contextlib.contextmanager
def hold(workdirs: Iterable[str | os.PathLike]) -> Iterator[None]:
  """Locks every workdir (all or none) for the duration of the block."""
  workdirs = list(workdirs)
  acquire_all(workdirs)
  try:
    yield
  finally:
    release_all(workdirs)
