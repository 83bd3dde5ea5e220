"""Every file the program writes, written whole or not at all.

    files.write_json(path, obj)             # config.json, results.json, failed.json
    files.save_npz(path, images=..., ...)   # the dataset caches
    files.write_text(path, text)            # the W&B run id, the W&B sweep export
    files.append_line(f, path, line)        # metrics.jsonl: a whole line or nothing
    files.write_with(path, write)           # figures, exported latents: write(f) on a file

Each writes a temporary file beside `path` and renames it over `path` when it is complete,
so a reader (or a relaunch after a kill) sees the old file or the new one, never half of
one. On any failure the temporary file is removed; a full disk (ENOSPC, or EDQUOT for a
quota) is raised as `DiskFull`, which names the path that filled, what the write needed and
what is free there, so that the one line a user reads points at the right disk.

A damaged file of a run is never deleted: `quarantine` moves it to DIR/damaged/. A damaged
derived file (a cache the program rebuilds from its sources) is moved to <its folder>/damaged/
the same way by `set_aside_derived`, with one warning line, and rebuilt by the caller.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
from typing import IO, Any, Callable, Iterator

from vae_jax.errors import UserError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NPZ_OVERHEAD = 1 << 12  # zip headers and each array's .npy header, generously


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


_PLAIN_MODE = 0o666 & ~_umask()


def size_text(n: int) -> str:
  """A byte count for people: 7.8 GiB, 716.0 KiB, 12 bytes."""
  for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{n} bytes"


class DiskFull(OSError):
  """No room left for a write: names the path, what it needed and what is free there.

  An `OSError` with errno ENOSPC and `filename` the path, so code that handles OSError keeps
  working; `str()` is the one line the launcher prints (before its advice)."""

  def __init__(self, path: str | os.PathLike, needed: int | None = None):
    self.path = pathlib.Path(path)
    self.needed = needed
    self.free, self.free_inodes = _free_space(self.path)
    super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

  def __str__(self) -> str:
    parts = []
    if self.needed is not None:
      parts.append(f"needs {size_text(self.needed)}")
    if self.free is not None:
      parts.append(f"{size_text(self.free)} free")
    if self.free_inodes == 0:
      parts.append("no free inodes: the file system's limit on the number of files")
    return f"disk full while writing {self.path}" + (f" ({', '.join(parts)})" if parts else "")


def _free_space(path: pathlib.Path) -> tuple[int | None, int | None]:
  """(bytes, inodes) free to this user on the file system of `path` (its nearest existing
  folder); None where the file system does not say."""
  for p in (path, *path.parents):
    try:
      st = os.statvfs(p)
    except OSError:
      continue
    return st.f_bavail * st.f_frsize, (st.f_favail if st.f_files else None)
  return None, None


def lacks_space(path: str | os.PathLike, needed: int) -> bool:
  """Whether the file system of `path` has less than `needed` bytes, or no inode, free."""
  free, inodes = _free_space(pathlib.Path(path))
  return (free is not None and free < needed) or inodes == 0


def is_disk_full(e: BaseException) -> bool:
  """An OSError that says the disk (or the user's quota) is full."""
  return isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS


@contextlib.contextmanager
def atomic(path: str | os.PathLike, mode: str = "wb", *,
           needed: int | None = None) -> Iterator[IO]:
  """Yields a temporary file beside `path`, renamed to `path` when the block completes.

  On any error the temporary file is removed and `path` is left as it was; a full disk is
  raised as `DiskFull(path, needed)` (`needed`: what the whole file takes, when known; else
  what had been written when the disk filled)."""
  path = pathlib.Path(path)
  try:
    f = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.",
                                    suffix=".tmp", delete=False)
  except OSError as e:
    if is_disk_full(e):  # no inode left for the temporary file
      raise DiskFull(path, needed) from e
    raise
  try:
    with f:
      yield f
      # The permissions a plain open() would give (mkstemp makes the file private).
      os.fchmod(f.fileno(), _PLAIN_MODE)
    os.replace(f.name, path)
  except BaseException as e:
    written = _size_of(f.name)
    with contextlib.suppress(OSError):
      os.unlink(f.name)
    if is_disk_full(e) and not isinstance(e, DiskFull):
      raise DiskFull(path, needed if needed is not None else written) from e
    raise


def _size_of(name: str) -> int | None:
  try:
    return os.stat(name).st_size
  except OSError:
    return None


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically (see `atomic`)."""
  with atomic(path, "wb", needed=len(data)) as f:
    f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically (see `atomic`)."""
  write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, write: Callable[[IO[bytes]], Any],
               needed: int | None = None) -> str:
  """Calls `write(f)` with a binary file that becomes `path` when it returns (see `atomic`):
  for writers that take a file object (a figure's `savefig`, an image's `save`). Returns
  `path` as a string."""
  with atomic(path, "wb", needed=needed) as f:
    write(f)
  return os.fspath(path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes `obj` as indented, key-sorted JSON to `path` atomically (see `atomic`)."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npz(path: str | os.PathLike, **arrays) -> None:
  """`np.savez(path, **arrays)`, atomically (see `atomic`); the parent folder is created.
  A full disk names `path` and the arrays' size."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  needed = sum(np.asarray(a).nbytes for a in arrays.values()) + _NPZ_OVERHEAD * len(arrays)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    if is_disk_full(e):
      raise DiskFull(path, needed) from e
    raise
  with atomic(path, "wb", needed=needed) as f:
    np.savez(f, **arrays)


def append_line(f: IO[bytes], path: str | os.PathLike, line: str) -> None:
  """Appends `line` + newline to `f` (a file opened "ab" with buffering=0, at its end) whole
  or not at all: a write the disk cuts short is cut back off the file and raised as
  `DiskFull` naming `path`."""
  data = (line + "\n").encode("utf-8")
  start = f.seek(0, io.SEEK_END)
  try:
    done = 0
    while done < len(data):
      done += f.write(data[done:])
  except OSError as e:
    with contextlib.suppress(OSError):
      f.truncate(start)
    if is_disk_full(e):
      raise DiskFull(path, len(data)) from e
    raise


def damaged_folder(workdir: str | os.PathLike) -> pathlib.Path:
  """DIR/damaged: where damaged files of a run are moved, each with the time it was found."""
  return pathlib.Path(workdir) / "damaged"


def quarantine_path(workdir: str | os.PathLike, name: str) -> pathlib.Path:
  """A new path in DIR/damaged/ for something called `name`, stamped with the time."""
  stamp = time.strftime("%Y%m%d-%H%M%S")
  folder = damaged_folder(workdir)
  folder.mkdir(parents=True, exist_ok=True)
  path, n = folder / f"{name}.{stamp}", 1
  while path.exists():
    path, n = folder / f"{name}.{stamp}.{n}", n + 1
  return path


def quarantine(path: str | os.PathLike, workdir: str | os.PathLike | None = None, *,
               name: str | None = None) -> pathlib.Path:
  """Moves a damaged file or folder of a run to DIR/damaged/ (nothing is deleted); returns
  where it went. `workdir`: the run's folder (default: the one holding `path`); `name`: what
  to call it there (default: its own name), before the time stamp."""
  path = pathlib.Path(path)
  dest = quarantine_path(workdir if workdir is not None else path.parent, name or path.name)
  shutil.move(str(path), dest)
  return dest


def copy_to_quarantine(path: str | os.PathLike) -> pathlib.Path:
  """Keeps a copy of a damaged file of a run in DIR/damaged/ (before it is repaired)."""
  path = pathlib.Path(path)
  dest = quarantine_path(path.parent, path.name)
  shutil.copyfile(path, dest)
  return dest


FileIdentity = tuple[int, int]


def identity(f: IO | str | os.PathLike) -> FileIdentity | None:
  """(device, inode) of an open file or of a path (None when nothing is there): which file a
  reader inspected, so that only that file is set aside (`set_aside`)."""
  try:
    st = os.fstat(f.fileno()) if hasattr(f, "fileno") else os.stat(f)
  except OSError:
    return None
  return st.st_dev, st.st_ino


def set_aside(path: str | os.PathLike, inspected: FileIdentity | None = None
              ) -> pathlib.Path | None:
  """Moves a damaged derived file or folder to <its folder>/damaged/ (`quarantine_path`: its
  name and the time); returns where it went, or None when there was nothing to move.

  Several processes may find the same cache damaged at once (two launches sharing a cache).
  Each moves it under an OS lock on <its folder>/damaged/.lock, and only while `path` is
  still the file it inspected (`inspected`, from `identity`; default whatever is there): a
  file another process has already moved, or moved and rebuilt (a rename, so a new inode), is
  left alone and None returned. The move is a rename within one file system: atomic."""
  path = pathlib.Path(path)
  folder = damaged_folder(path.parent)
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
      now = identity(path)
      if now is None or (inspected is not None and now != inspected):
        return None
      dest = quarantine_path(path.parent, path.name)
      os.rename(path, dest)
      return dest
  except OSError as e:
    if is_disk_full(e):
      raise DiskFull(folder) from None
    raise


def set_aside_derived(path: str | os.PathLike, problem: str, rebuild: str,
                      inspected: FileIdentity | None = None) -> pathlib.Path | None:
  """What becomes of a derived file that fails its check: moved aside (`set_aside`) and one
  warning line on stderr, "warning: <path> <problem>; moved it to <where>; <rebuild>"; the
  caller then rebuilds it. Returns where it went (None: another process had moved it first).
  A file that cannot be moved (a cache folder this user may not write) is a one-line
  `UserError`."""
  try:
    dest = set_aside(path, inspected)
  except DiskFull:
    raise
  except OSError as e:
    raise UserError(f"{path} {problem}, and cannot be moved aside ({e.strerror}); move it "
                    "away yourself, or point $VAE_JAX_CACHE_DIR at a folder you can write"
                    ) from None
  where = f"moved it to {dest}" if dest is not None else "another process moved it aside"
  print(f"warning: {path} {problem}; {where}; {rebuild}", file=sys.stderr, flush=True)
  return dest
