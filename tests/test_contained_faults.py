"""A full disk named where it filled, and faults that leave nothing behind, as a user meets
them (launch.py in a subprocess).

  * A full disk names the path that filled (the dataset cache, the workdir's checkpoint, the
    W&B sweep export), what the write needed and what was free, in one line (exit 2), and
    leaves no partial file anywhere.
  * A fault the run recovers from (a damaged newest checkpoint) or reports (a disk that fills
    in the middle of a checkpoint) prints its one line and nothing else: no traceback from
    the reads or writes Orbax had in flight. That is a race, so each case runs several times,
    and the checkpoint-level test below repeats a failed restore and a failed save with
    enough arrays in flight to lose it without `runtime.contain`.

Small disks are tmpfs mounts (root only; skipped elsewhere): a byte limit, or an inode limit
(`nr_inodes`), which lets the space check before a save pass and the save itself run out of
files part way through.
"""

import contextlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from tests import forkserver
from tests.helpers import (ROOT, TINY_CONFIG_FILE, assert_same_final_params, write_checkpointed_run,
                           write_fake_dsprites)

_LEFTOVERS = re.compile(r"\.tmp$|orbax-checkpoint-tmp")
# Tracebacks, asyncio's complaints, and log lines (absl's "E1205 09:15:27.2 ..." or Python's).
_NOISE = re.compile(r"Traceback|Exception ignored|Task exception|Task was destroyed|Event loop "
                    r"is closed|never retrieved|^[EWF]\d{4} \d\d:\d\d|^(ERROR|WARNING):")


@contextlib.contextmanager
def _small_disk(where: pathlib.Path, options: str):
  """A tmpfs mounted at `where` with `options` (e.g. "size=64k"), unmounted afterwards."""
  where.mkdir(parents=True, exist_ok=True)
  if os.geteuid() != 0 or not shutil.which("mount"):
    pytest.skip("needs root to mount a small tmpfs")
  if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                    capture_output=True).returncode:
    pytest.skip("cannot mount a tmpfs here")
  try:
    yield where
  finally:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _remount(where: pathlib.Path, options: str):
  subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def _launch(*args, timeout=600):
  return forkserver.run([sys.executable, str(ROOT / "launch.py"), *map(str, args)], cwd=ROOT,
                        text=True, capture_output=True, timeout=timeout)


def _lines(proc) -> list[str]:
  """What the user reads, without tqdm's progress bars."""
  text = (proc.stdout + "\n" + proc.stderr).replace("\r", "\n")
  return [l for l in text.splitlines() if l.strip() and not re.search(r"\d+%\|", l)]


def _one_error_line(proc, *needles) -> str:
  """Exit 2 and one `error:` line holding the needles; nothing else but what a run prints
  on its way (no traceback, no library log); returns the line."""
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
  lines = _lines(proc)
  errors = [l for l in lines if l.startswith("error:")]
  assert len(errors) == 1, lines
  assert not [l for l in lines if _NOISE.search(l)], lines
  for n in needles:
    assert n in errors[0], (n, errors[0])
  return errors[0]


def _leftovers(root: pathlib.Path) -> list[str]:
  return [str(p) for p in root.rglob("*") if _LEFTOVERS.search(p.name)]


# A full disk names the path that filled ----------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_while_writing_the_dataset_cache_names_the_cache(tmp_path):
  manual = tmp_path / "manual" / "dsprites"
  write_fake_dsprites(manual)  # 192 images: a 100 KiB cache
  wd = tmp_path / "run"
  with _small_disk(tmp_path / "disk", "size=64k") as disk:
    args = ["--config", ROOT / "configs" / "dsprites_vae.py", "--workdir", wd,
            "--config.num_epochs=1", "--config.batch_size=32", "--config.wandb.mode=disabled",
            "--config.eval_disentanglement=False", "--config.write_figures=False",
            f"--config.data.manual_dir={manual}", f"--config.data.cache_dir={disk / 'cache'}"]
    cache = disk / "cache" / "dsprites" / "released.npz"
    line = _one_error_line(_launch(*args), f"disk full while writing {cache} (needs ",
                           " KiB free", "no half-written file is left")
    assert "checkpoint" not in line and str(wd) not in line
    assert not [p for p in disk.rglob("*") if p.is_file()]  # no partial cache
    assert not wd.exists()  # the run wrote nothing
    _remount(disk, "size=4m")  # what the line says: free space, relaunch
    proc = _launch(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cache.is_file() and not _leftovers(disk)


@pytest.mark.slow
def test_a_full_disk_while_exporting_the_wandb_sweep_names_the_export_file(tmp_path):
  cfg = tmp_path / "cfg.py"
  cfg.write_text(TINY_CONFIG_FILE.format(cache_dir=str(tmp_path / "cache")))
  with _small_disk(tmp_path / "disk", "size=16k") as disk:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):  # fill it up
      while True:
        f.write(b"x" * 4096)
    export = disk / "sweep.yaml"
    _one_error_line(_launch("--config", cfg, "--workdir", tmp_path / "w",
                            f"--export_wandb_sweep={export}"),
                    f"disk full while writing {export} (needs ", "0 bytes free")
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    filler.unlink()
    proc = _launch("--config", cfg, "--workdir", tmp_path / "w", f"--export_wandb_sweep={export}")
    assert proc.returncode == 0 and "program: launch.py" in export.read_text()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A 4-epoch config checkpointing every epoch (three kept), and its uninterrupted run:
  (root, the file's path, its config), the run in root/ref."""
  return write_checkpointed_run(tmp_path_factory.mktemp("contained"))


@pytest.mark.slow
def test_a_disk_that_fills_during_a_checkpoint_is_one_line_every_time(tiny_run, tmp_path):
  """The disk runs out of files (inodes) at a different point of the second checkpoint's
  write in each try: one line naming that checkpoint and the intact one, no temporary folder,
  every metrics line whole; freed, the same command resumes to the uninterrupted run's bits."""
  root, path, config = tiny_run
  # 6 inodes before the first save (the mount's root, workdir, lock, config.json,
  # metrics.jsonl, checkpoints/), 20 to 35 a checkpoint (Orbax's data files vary in number).
  for limit in (30, 45, 60):
    with _small_disk(tmp_path / f"disk{limit}", f"size=64m,nr_inodes={limit}") as disk:
      wd = disk / "run"
      line = _one_error_line(_launch("--config", path, "--nosweep", "--workdir", wd),
                             f"disk full while writing {wd}/checkpoints/", "(needs ")
      assert not _leftovers(disk), _leftovers(disk)
      saved = sorted(int(p.name) for p in (wd / "checkpoints").iterdir())
      if saved:  # the newest complete one is named, intact
        assert f"last good checkpoint: epoch {saved[-1]} in {wd}/checkpoints (intact), and no " \
               "half-written checkpoint" in line, line
        assert saved[-1] < 4
      else:
        assert "no half-written file is left" in line, line
      rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
      assert [r["step"] for r in rows] == [8 * (e + 1) for e in range(len(rows))]
      if limit == 60:  # freed, the relaunch resumes (once: it takes a launch)
        _remount(disk, "size=64m,nr_inodes=10000")
        proc = _launch("--config", path, "--nosweep", "--workdir", wd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert_same_final_params(config, root / "ref", wd)


# A recovered fault prints its one warning and nothing else -----------------------------------


def _damage(checkpoint: pathlib.Path, how: str):
  files = sorted(p for p in checkpoint.rglob("*") if p.is_file())
  if how == "data":  # the largest array file cut short: metadata reads, array reads fail
    big = max(files, key=lambda p: p.stat().st_size)
    big.write_bytes(big.read_bytes()[: big.stat().st_size * 6 // 10])
    return
  for p in files:
    p.write_bytes(b"" if how == "truncate" else os.urandom(max(p.stat().st_size, 16)))


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_prints_one_warning_and_nothing_else(tiny_run, tmp_path):
  root, path, config = tiny_run
  base = tmp_path / "base"
  proc = _launch("--config", path, "--nosweep", "--workdir", base, "--config.num_epochs=3")
  assert proc.returncode == 0, proc.stderr[-2000:]
  for how in ("data", "truncate", "garbage", "data"):
    wd = tmp_path / f"run_{how}_{len(list(tmp_path.iterdir()))}"
    shutil.copytree(base, wd)
    _damage(wd / "checkpoints" / "3", how)
    proc = _launch("--config", path, "--nosweep", "--workdir", wd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _lines(proc)
    assert len(lines) == 2, lines  # the warning and the results' summary, nothing else
    assert lines[0].startswith(f"warning: checkpoint of epoch 3 in {wd}/checkpoints does not "
                               "restore (") and "trying an older one" in lines[0], lines
    assert lines[1].startswith(f"{wd}: test/neg_elbo=")
    assert len(list((wd / "damaged").glob("checkpoint-3.*"))) == 1
    assert_same_final_params(config, root / "ref", wd)


_CHECKPOINT_RACE = r"""
import os, pathlib, shutil, sys
import jax.numpy as jnp, numpy as np
from absl import logging
logging.set_verbosity(logging.WARNING)
from vae_jax import checkpoints
from vae_jax.runtime import files

root, tries = pathlib.Path(sys.argv[1]), int(sys.argv[2])
# 60 arrays of 1 MiB: a restore that fails on the last ones has the others in flight.
state = {f"w{i}": jnp.asarray(np.random.default_rng(i).normal(size=(4096, 64)), jnp.float32)
         for i in range(30)}
ck = checkpoints.Checkpointer(root / "good", 2)
ck.save(1, state, {"m": state})
ck.close()
for t in range(tries):
  wd = root / f"restore{t}"
  shutil.copytree(root / "good" / "checkpoints", wd / "checkpoints")
  data = max((p for p in (wd / "checkpoints").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)
  data.write_bytes(data.read_bytes()[: data.stat().st_size * (50 + 7 * t) // 100])
  ck = checkpoints.Checkpointer(wd, 2)
  try:
    ck.restore(1, state, {"m": state})
    print("restored a damaged checkpoint")
  except checkpoints.Damaged:
    print("damaged")
  ck.close()
disk = pathlib.Path(sys.argv[3])  # 30 inodes; a save takes 20 to 30: it runs out part way
for t in range(tries):
  fillers = [disk / f"filler{i}" for i in range(12 + 2 * t)]  # out of files at another point
  for f in fillers:
    f.touch()
  ck = checkpoints.Checkpointer(disk / f"save{t}", 2)
  try:
    ck.save(1, state, {"m": state})
    print("saved on a full disk")
  except files.DiskFull as e:
    print("disk full" if str(disk) in str(e) else e)
  ck.close()
  for f in fillers:
    f.unlink()
  shutil.rmtree(disk / f"save{t}")
print("left:", sorted(str(p) for p in disk.rglob("*")))
"""


@pytest.mark.slow
def test_failed_restores_and_saves_leave_nothing_in_flight(tmp_path):
  """Repeated, with 60 MiB in flight: a restore that fails on a truncated array file, and a
  save that runs out of disk part way. Each raises its one exception and prints nothing.
  (Without `runtime.contain`, the restores print "Exception ignored in: <coroutine object
  _read_array_index_and_device_put ...>" and "Event loop is closed" tracebacks in most runs
  of this test, and each failed save Orbax's own logged traceback.)"""
  tries = 6
  with _small_disk(tmp_path / "disk", "size=256m,nr_inodes=30") as disk:
    proc = forkserver.run([sys.executable, "-c", _CHECKPOINT_RACE, str(tmp_path), str(tries),
                           str(disk)], cwd=ROOT, text=True, capture_output=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split("\n")[:2 * tries] == ["damaged"] * tries + ["disk full"] * tries, \
      proc.stdout
  assert proc.stdout.strip().endswith("left: []"), proc.stdout
  assert proc.stderr == "", proc.stderr[-3000:]
