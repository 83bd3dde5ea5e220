"""A damaged workdir, exhausted memory or disk, a config file that does not load: each ends
with one line and a documented exit status, nothing lost or half-written, and the relaunch the
line suggests does what it says. Launched as a user launches (launch.py in a subprocess)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests import forkserver
from tests.helpers import (ROOT, TINY_CONFIG_FILE, assert_same_final_params, write_checkpointed_run,
                           write_fake_cache)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A 4-epoch config file checkpointing every epoch, and its uninterrupted reference run:
  (root, the file's path, its config), the run in root/ref."""
  return write_checkpointed_run(tmp_path_factory.mktemp("faults"))


def _launch(path, workdir, *args, env=None, memory_gib=None):
  cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(path), "--nosweep",
         "--workdir", str(workdir), *args]
  if memory_gib:  # the launch under an address-space limit: a machine with that much memory
    limit = memory_gib * 2**30
    cmd = [sys.executable, "-c", "import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, "
           f"({limit}, {limit})); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
           *cmd[1:]]
  return forkserver.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=300,
                        env={**os.environ, **(env or {})})


def _error_line(proc, code, *needles):
  """The process exited with `code`, printing one `error:` line (no traceback) holding the
  needles; returns that line."""
  assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1, proc.stderr[-3000:]
  for n in needles:
    assert n in lines[0], (n, lines[0])
  return lines[0]


def _partly_trained(setup, tmp_path, epochs=3):
  root, path, config = setup
  wd = tmp_path / "run"
  proc = _launch(path, wd, f"--config.num_epochs={epochs}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  return wd


def _damage(folder: pathlib.Path, how: str):
  for p in sorted(folder.rglob("*")):
    if p.is_file():
      p.write_bytes(b"" if how == "truncate" else os.urandom(max(p.stat().st_size, 16)))


def _snapshot(wd):
  return {str(p.relative_to(wd)): p.read_bytes() for p in sorted(wd.rglob("*"))
          if p.is_file() and p.name != "lock"}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(
    setup, tmp_path, how):
  root, path, config = setup
  wd = _partly_trained(setup, tmp_path)
  _damage(wd / "checkpoints" / "3", how)
  proc = _launch(path, wd)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout + proc.stderr
  assert "checkpoint of epoch 3" in out and "does not restore" in out and "Traceback" not in out
  kept = list((wd / "damaged").glob("checkpoint-3.*"))
  assert len(kept) == 1 and any(p.is_file() for p in kept[0].rglob("*"))  # moved, not deleted
  # Resumed from epoch 2 and recomputed 3 and 4: the same bits as the run never damaged.
  assert_same_final_params(config, root / "ref", wd)
  ref = json.loads((root / "ref" / "results.json").read_text())
  assert json.loads((wd / "results.json").read_text())["test/neg_elbo"] == ref["test/neg_elbo"]
  steps = [json.loads(l)["step"] for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert steps == sorted(set(steps)) and len(steps) == 4


@pytest.mark.slow
def test_when_no_checkpoint_restores_the_run_stops_naming_them_then_starts_afresh(setup, tmp_path):
  root, path, config = setup
  wd = _partly_trained(setup, tmp_path, epochs=2)
  for e in ("1", "2"):
    _damage(wd / "checkpoints" / e, "garbage")
  _error_line(_launch(path, wd), 2, "no checkpoint", "restores", "epoch 2", "epoch 1",
              "train from scratch")
  assert len(list((wd / "damaged").glob("checkpoint-*"))) == 2
  proc = _launch(path, wd)  # what the line says: the relaunch trains from scratch
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert_same_final_params(config, root / "ref", wd)


@pytest.mark.slow
def test_damaged_bookkeeping_files_are_named_in_one_line_and_left_alone(setup, tmp_path):
  root, path, config = setup
  # config.json: refused (the run's config is unknown) ...
  wd = _partly_trained(setup, tmp_path, epochs=2)
  (wd / "config.json").write_bytes(b"\x00garbage{")
  before = _snapshot(wd)
  _error_line(_launch(path, wd), 2, "config.json is damaged", "--allow_config_change")
  assert _snapshot(wd) == before
  # ... unless the user vouches for the config: the damaged file is kept aside, the run resumes.
  proc = _launch(path, wd, "--allow_config_change")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (wd / "damaged").is_dir() and json.loads((wd / "config.json").read_text())["config"]
  assert_same_final_params(config, root / "ref", wd)

  # results.json of a finished run: named, never replaced; moving it aside re-evaluates.
  results = wd / "results.json"
  good = results.read_bytes()
  results.write_bytes(good[: len(good) // 2])
  before = _snapshot(wd)
  _error_line(_launch(path, wd), 2, "results.json is damaged", "finished run", "mv ")
  assert _snapshot(wd) == before
  results.rename(wd / "results.json.damaged")
  proc = _launch(path, wd)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(results.read_text())["test/neg_elbo"] == json.loads(good)["test/neg_elbo"]

  # metrics.jsonl with garbage lines: they are dropped (the file as found kept aside).
  wd2 = _partly_trained(setup, tmp_path / "m", epochs=2)
  with open(wd2 / "metrics.jsonl", "ab") as f:
    f.write(b"\xff\xfe not json\n{\"step\": \n")
  proc = _launch(path, wd2)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "damaged line" in proc.stdout + proc.stderr
  rows = [json.loads(l) for l in (wd2 / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [8, 16, 24, 32]
  assert list((wd2 / "damaged").glob("metrics.jsonl.*"))


@pytest.mark.slow
def test_paths_that_are_files_where_folders_belong_fail_in_one_line(setup, tmp_path):
  root, path, _ = setup
  a_file = tmp_path / "taken"
  a_file.write_text("not a folder")
  _error_line(_launch(path, a_file), 2, "is a file, not a folder")
  _error_line(_launch(path, a_file / "sub"), 2, "is a file, not a folder")
  assert a_file.read_text() == "not a folder"
  wd = tmp_path / "wd"
  wd.mkdir()
  (wd / "checkpoints").write_text("oops")
  _error_line(_launch(path, wd), 2, "checkpoints is a file")
  wd3 = tmp_path / "wd3"
  wd3.mkdir()
  (wd3 / "metrics.jsonl").mkdir()
  proc = _launch(path, wd3)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr and "metrics.jsonl" in proc.stderr


@pytest.mark.slow
def test_a_damaged_wandb_run_id_starts_a_new_wandb_run(setup, tmp_path):
  root, path, _ = setup
  wd = tmp_path / "w"
  proc = _launch(path, wd, "--config.wandb.mode=offline", "--config.num_epochs=1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  first = (wd / "wandb" / "run_id").read_text()
  (wd / "wandb" / "run_id").write_bytes(b"\x00\xff/../..")
  proc = _launch(path, wd, "--config.wandb.mode=offline")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "run_id is damaged" in proc.stdout + proc.stderr
  second = (wd / "wandb" / "run_id").read_text()
  assert second != first and second.isalnum()
  runs = sorted(p.name for p in (wd / "wandb").glob("offline-run-*"))
  assert [r.rsplit("-", 1)[1] for r in runs] == [first, second]


@pytest.mark.slow
def test_a_damaged_sweep_csv_is_rebuilt_by_relaunching_the_sweep(setup, tmp_path):
  root, path, _ = setup
  base = [sys.executable, str(ROOT / "launch.py"), "--config", str(path), "--workdir",
          str(tmp_path / "sw"), "--config.num_epochs=1"]
  proc = forkserver.run(base, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  good = (tmp_path / "sw" / "sweep.csv").read_text()
  (tmp_path / "sw" / "sweep.csv").write_bytes(os.urandom(300))
  from vae_jax import sweep_table, workdir  # pylint: disable=g-import-not-at-top
  with pytest.raises(workdir.DamagedFile, match="relaunching the sweep"):
    sweep_table.read_csv(tmp_path / "sw" / "sweep.csv")
  proc = forkserver.run(base, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "sw" / "sweep.csv").read_text() == good


@pytest.mark.slow
def test_out_of_memory_is_one_line_naming_the_size_and_the_fields(setup, tmp_path):
  root, path, _ = setup
  big = tmp_path / "big.py"  # a batch of 2048 through 200,000 hidden units: ~8 GiB a buffer
  big.write_text(TINY_CONFIG_FILE.format(cache_dir=write_fake_cache(tmp_path / "c", n_train=2048))
                 .replace("c.batch_size = 16", "c.batch_size = 2048")
                 .replace("c.model.hidden_sizes = (32,)", "c.model.hidden_sizes = (200000,)"))
  proc = _launch(big, tmp_path / "big", memory_gib=5)
  line = _error_line(proc, 2, "out of", "memory", "GiB", "batch_size=2048",
                     "model.hidden_sizes=(200000,)", "lower these")
  assert "no checkpoint had been saved yet" in line
  assert not list((tmp_path / "big").glob("checkpoints/*"))


def _can_mount_tmpfs(where: pathlib.Path) -> bool:
  where.mkdir(parents=True, exist_ok=True)
  if not shutil.which("mount") or os.geteuid() != 0:
    return False
  ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2600k", "tmpfs", str(where)],
                      capture_output=True).returncode == 0
  return ok


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_relaunch_resumes(setup, tmp_path):
  root, path, _ = setup
  disk = tmp_path / "disk"
  if not _can_mount_tmpfs(disk):
    pytest.skip("needs root and tmpfs to make a small disk")
  try:
    # ~0.75 MB a checkpoint (64k parameters and Adam's two moments): the setup keeps three,
    # which fit in 2.6 MB; the fourth does not.
    cfg = tmp_path / "wide.py"
    cfg.write_text(path.read_text().replace("c.model.hidden_sizes = (32,)",
                                            "c.model.hidden_sizes = (448,)"))
    wd = disk / "run"
    line = _error_line(_launch(cfg, wd), 2, "disk full", "last good checkpoint: epoch",
                       "no half-written checkpoint")
    kept = int(line.split("last good checkpoint: epoch ")[1].split()[0])
    names = [p.name for p in (wd / "checkpoints").iterdir()]
    assert all(n.isdigit() for n in names), names  # no temporary folder left
    assert max(map(int, names)) == kept < 4
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    proc = _launch(cfg, wd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((wd / "results.json").read_text())["epochs"] == 4
    ref = tmp_path / "ref_wide"
    assert _launch(cfg, ref).returncode == 0
    assert (json.loads((wd / "results.json").read_text())["test/neg_elbo"]
            == json.loads((ref / "results.json").read_text())["test/neg_elbo"])
  finally:
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("body,needles", [
    ("import not_a_module\ndef get_config():\n  return None\n",
     ["line 1", "does not import", "ModuleNotFoundError", "not_a_module"]),
    ("def get_config():\n  x = 1\n  return x / 0\n", ["line 3", "get_config() raised", "ZeroDivisionError"]),
    ("def get_config(:\n", ["line 1", "SyntaxError"]),
    ("VALUE = 1\n", ["defines no get_config()"]),
])
def test_a_config_file_that_does_not_load_is_named_with_its_error(tmp_path, body, needles):
  bad = tmp_path / "broken_config.py"
  bad.write_text(body)
  proc = forkserver.run([sys.executable, str(ROOT / "launch.py"), "--config", str(bad),
                         "--workdir", str(tmp_path / "w")], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  line = _error_line(proc, 2, str(bad), *needles)
  assert "bad command line" not in line
  assert not (tmp_path / "w").exists()
