"""Multi-host training on one machine: 2 processes (1 CPU device each, coordinator on
127.0.0.1) give the same results as 1 process with 2 devices, and only process 0 writes."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT, TINY_CONFIG_FILE, write_fake_cache


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

  single = subprocess.run([*base, "--workdir", str(tmp_path / "one")], cwd=ROOT, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert single.returncode == 0, single.stderr[-2000:]

  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  procs = [subprocess.Popen([*base, "--workdir", str(tmp_path / "two"),
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
