"""Multi-host training on one machine: 2 processes (1 CPU device each, coordinator on
127.0.0.1) give the same results as 1 process with 2 devices, and only process 0 writes."""

import json
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import forkserver
from tests.helpers import ROOT, TINY_CONFIG_FILE, write_fake_cache, xla_env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_two_devices(tmp_path):
  cache = write_fake_cache(tmp_path / "cache")
  cfg = tmp_path / "cfg.py"
  cfg.write_text(TINY_CONFIG_FILE.format(cache_dir=cache).replace(
      'c.wandb.mode = "disabled"', 'c.wandb.mode = "offline"'))
  base = [sys.executable, str(ROOT / "launch.py"), "--config", str(cfg), "--nosweep"]

  single = forkserver.run([*base, "--workdir", str(tmp_path / "one")], cwd=ROOT, text=True,
                          capture_output=True, timeout=300,
                          env=xla_env(2))
  assert single.returncode == 0, single.stderr[-2000:]

  port = _free_port()
  env = xla_env(1)
  procs = [forkserver.popen([*base, "--workdir", str(tmp_path / "two"),
                             f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                             f"--process_id={i}"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
  try:
    outs = [p.communicate(timeout=300) for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]

  one = json.loads((tmp_path / "one" / "results.json").read_text())
  two = json.loads((tmp_path / "two" / "results.json").read_text())
  for k in ("test/neg_elbo", "test/rec", "test/kl", "train/loss"):
    np.testing.assert_allclose(two[k], one[k], rtol=1e-5, err_msg=k)
  info = json.loads((tmp_path / "two" / "config.json").read_text())
  assert info["process_count"] == 2 and len(info["devices"]) == 2
  # Exactly one writer: one metrics line per epoch and one W&B run.
  assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
  assert len(list((tmp_path / "two" / "wandb").glob("offline-run-*"))) == 1


def _two_processes(cfg, workdir, *extra):
  port = _free_port()
  env = xla_env(1)
  return [forkserver.popen([sys.executable, str(ROOT / "launch.py"), "--config", str(cfg),
                            "--nosweep", "--workdir", str(workdir), *extra,
                            f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                            f"--process_id={i}"], cwd=ROOT, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]


def _communicate(procs, timeout=300):
  """Each process's (stdout, stderr) once it ends; none is left running, whatever happens."""
  try:
    return [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      p.kill()


def _wait_for_first_epoch(workdir, procs, timeout=300):
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + timeout
  while not (metrics.exists() and metrics.read_text().strip()):
    assert time.time() < deadline and all(p.poll() is None for p in procs)
    time.sleep(0.05)


def _long_config(tmp_path):
  cache = write_fake_cache(tmp_path / "cache", n_train=1024)
  cfg = tmp_path / "cfg.py"
  cfg.write_text(TINY_CONFIG_FILE.format(cache_dir=cache).replace(
      "c.num_epochs = 2", "c.num_epochs = 5\n  c.checkpoint_every_epochs = 100"))
  return cfg


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_epoch_with_one_checkpoint(tmp_path):
  cfg = _long_config(tmp_path)
  wd = tmp_path / "run"
  procs = _two_processes(cfg, wd)
  try:
    _wait_for_first_epoch(wd, procs)
    procs[1].send_signal(signal.SIGTERM)
  except BaseException:
    for p in procs:
      p.kill()
    raise
  outs = _communicate(procs)
  if any(p.returncode == 0 for p in procs):
    pytest.skip("the run finished before SIGTERM arrived")
  saved = sorted(int(p.name) for p in (wd / "checkpoints").iterdir())
  assert len(saved) == 1 and saved[0] < 5  # one checkpoint, written by both together
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err
    assert f"saved a checkpoint at epoch {saved[0]}" in err, err[-2000:]
  assert "reached another process" in outs[0][1]
  procs = _two_processes(cfg, wd)
  outs = _communicate(procs)
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  steps = [json.loads(l)["step"] for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert steps == [64 * (e + 1) for e in range(5)]


@pytest.mark.slow
def test_a_process_that_dies_ends_the_others_in_bounded_time_with_one_line(tmp_path):
  cfg = _long_config(tmp_path)
  wd = tmp_path / "run"
  procs = _two_processes(cfg, wd)
  try:
    _wait_for_first_epoch(wd, procs)
    procs[1].kill()
    t0 = time.time()
    _, err = procs[0].communicate(timeout=120)  # not left waiting in a collective
    waited = time.time() - t0
  finally:
    for p in procs:
      p.kill()
  assert procs[0].returncode == 4, err[-2000:]
  lines = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
  assert "another process" in lines[0] and "relaunch every process" in lines[0]
  assert waited < 60


_MAIN_FIRST = r"""
import json, os, sys, time
import jax
from vae_jax.runtime import hosts
from vae_jax.errors import UserError
pid, port, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
hosts.initialize(coordinator_address="127.0.0.1:" + port, num_processes=2, process_id=pid)

def prepare():  # what train.load_dataset hands to main_first: slow on process 0, then cached
  with open(log, "a") as f:
    f.write(json.dumps({"process": pid, "start": time.time()}) + "\n")
  if pid == 0:
    time.sleep(2.0)
  with open(log, "a") as f:
    f.write(json.dumps({"process": pid, "end": time.time()}) + "\n")
  return pid

out = {"returned": hosts.main_first(prepare, "prepare the dataset")}
def refuse():
  raise UserError("data.name='x' is unknown")
try:
  hosts.main_first(refuse, "prepare the dataset")
except UserError as e:
  out["error"] = str(e)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_process_0_prepares_first_and_its_error_reaches_the_others(tmp_path):
  """The agreement train.load_dataset and the workdir lock use: process 1 starts preparing
  only after process 0 finished (so it reads the cache process 0 wrote), and a refusal on
  process 0 ends process 1 with the same line instead of a wait."""
  port, log = str(_free_port()), tmp_path / "log.jsonl"
  procs = [forkserver.popen([sys.executable, "-c", _MAIN_FIRST, str(i), port, str(log)], cwd=ROOT,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=xla_env(1))
           for i in range(2)]
  outs = _communicate(procs, timeout=120)
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
  assert [g["returned"] for g in got] == [0, 1]
  assert got[0]["error"] == "data.name='x' is unknown"
  assert got[1]["error"] == "process 0: data.name='x' is unknown"
  events = [json.loads(l) for l in log.read_text().splitlines()]
  end0 = next(e["end"] for e in events if e["process"] == 0 and "end" in e)
  start1 = next(e["start"] for e in events if e["process"] == 1 and "start" in e)
  assert start1 >= end0
