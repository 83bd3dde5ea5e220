"""One thin writer for everything a run logs: `log(step, scalars)` and `log_images(step, paths)`.

Behind it: a local `metrics.jsonl` (one JSON object per logged step, each line written whole
or not at all) and a W&B run (offline by default, its files under DIR/wandb; online when
asked). Only process 0 writes; other processes get a writer that does nothing.
`open_run_logs` opens a run's writer for a resumed or fresh run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import pathlib
import re
import uuid
import warnings
from typing import Any, Mapping

from vae_jax.errors import UserError
from vae_jax.runtime import files

log = logging.getLogger(__name__)

_RUN_ID_FILE = "run_id"
_WANDB_MIN_FREE = 1 << 20  # below this W&B cannot start a run's files (a full disk)
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def truncate_metrics(path: pathlib.Path, last_step: int) -> None:
  """Drops lines logged after `last_step` (a resumed run replays those steps). Lines that do
  not parse (cut short by a kill, or garbage) are dropped too; when there are any, the file as
  found is kept in DIR/damaged/ first."""
  if not path.exists():
    return
  if not path.is_file():
    raise UserError(f"{path} is not a file; move it aside and relaunch")
  keep, bad = [], 0
  for line in path.read_bytes().decode("utf-8", "replace").splitlines():
    try:
      if int(json.loads(line)["step"]) <= last_step:
        keep.append(line)
    except (ValueError, KeyError, TypeError):
      bad += bool(line.strip())
  if bad:
    copy = files.copy_to_quarantine(path)
    print(f"warning: {path}: dropped {bad} damaged line(s); the file as found is in {copy}")
  files.write_text(path, "".join(l + "\n" for l in keep))


def _jsonable(v):
  v = float(v)
  return v if math.isfinite(v) else str(v)


class Writer:
  """Writes scalars and images of one run to metrics.jsonl and W&B."""

  def __init__(self, workdir: str | os.PathLike, *, config: Mapping[str, Any], wandb_config,
               name: str | None = None, group: str | None = None, enabled: bool = True):
    self.enabled = enabled
    self.workdir = pathlib.Path(workdir)
    self._run = None
    if not enabled:
      return
    self._jsonl_path = self.workdir / "metrics.jsonl"
    self._jsonl = open(self._jsonl_path, "ab", buffering=0)  # whole lines: files.append_line
    if wandb_config.mode != "disabled":
      self._run = self._start_wandb(config, wandb_config, name, group)

  def _start_wandb(self, config, wandb_config, name, group):
    import wandb  # pylint: disable=g-import-not-at-top  (slow import, only when used)

    wdir = self.workdir / "wandb"
    if wdir.exists() and not wdir.is_dir():
      raise UserError(f"{wdir} is a file, not W&B's folder; move it aside and relaunch (or "
                      "pass --config.wandb.mode=disabled)")
    wdir.mkdir(parents=True, exist_ok=True)
    id_file = wdir / _RUN_ID_FILE
    run_id = None
    if id_file.exists():
      run_id = id_file.read_bytes().decode("utf-8", "replace").strip()
      if not _RUN_ID.fullmatch(run_id):
        print(f"warning: {id_file} is damaged; this workdir continues in a new W&B run (the "
              "old run's files stay in DIR/wandb)")
        run_id = None
    if run_id is None:
      run_id = uuid.uuid4().hex[:12]
      files.write_text(id_file, run_id)
    # Under `wandb agent` the agent chooses the run (WANDB_RUN_ID); otherwise a resumed
    # workdir continues its own W&B run.
    ident = {} if os.environ.get("WANDB_SWEEP_ID") else {"id": run_id, "resume": "allow"}
    kwargs = dict(project=wandb_config.project, entity=wandb_config.entity, dir=str(self.workdir),
                  **ident, name=wandb_config.name or name or self.workdir.name,
                  group=wandb_config.group or group, config=dict(config), reinit="create_new",
                  settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                          init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60))))
    try:
      return wandb.init(mode=wandb_config.mode, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      if files.lacks_space(wdir, _WANDB_MIN_FREE):  # W&B's service writes in its own process
        raise files.DiskFull(wdir, _WANDB_MIN_FREE) from e
      if wandb_config.mode != "online":
        raise UserError(f"W&B could not start an offline run in {wdir} ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:160]}); move that folder aside or pass "
                        "--config.wandb.mode=disabled") from None
      reason = " ".join(str(e).split())[:200]
      warnings.warn(f"W&B online run could not start ({type(e).__name__}: {reason}); "
                    "logging offline under DIR/wandb instead (sync later with `wandb sync`)")
      wandb.teardown()  # the failed attempt still holds the run id in this process
      return wandb.init(mode="offline", **kwargs)

  def log(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _jsonable(v) for k, v in scalars.items()}}
    files.append_line(self._jsonl, self._jsonl_path, json.dumps(row))
    if self._run is not None:
      self._run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

  def log_images(self, step: int, images: Mapping[str, str | os.PathLike]) -> None:
    """Logs PNG files (already written into the workdir) as W&B images."""
    if not self.enabled or self._run is None:
      return
    import wandb  # pylint: disable=g-import-not-at-top
    self._run.log({k: wandb.Image(str(p)) for k, p in images.items()}, step=int(step))

  def summary(self, results: Mapping[str, float]) -> None:
    if self.enabled and self._run is not None:
      self._run.summary.update({k: float(v) for k, v in results.items()})

  def close(self) -> None:
    if not self.enabled:
      return
    self._jsonl.close()
    if self._run is not None:
      with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        self._run.finish()
      self._run = None


def open_run_logs(workdir: pathlib.Path, config, *, resume_step: int,
                  extra_config: Mapping[str, Any] | None = None, group: str | None = None,
                  is_main: bool = True) -> tuple[Writer, float]:
  """Opens the writer of a run resuming at `resume_step` (0: a fresh one): metrics.jsonl cut
  back to that step (the steps after it are replayed), config.json rewritten, the W&B run
  resumed. Returns (writer, the training seconds already spent)."""
  from vae_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top  (models, data)
  seconds = 0.0
  if is_main:
    truncate_metrics(workdir / "metrics.jsonl", resume_step)
    seconds = workdir_lib.last_logged(workdir, "train/seconds")
    files.write_json(workdir / "config.json", workdir_lib.run_info(config))
  wandb_config = {**workdir_lib.resolved_config(config), **(extra_config or {})}
  writer = Writer(workdir, config=wandb_config, wandb_config=config.wandb, group=group,
                  enabled=is_main)
  return writer, seconds
