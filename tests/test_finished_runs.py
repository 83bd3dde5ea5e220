"""A finished run answers only for the config it was trained with: relaunching it (a single
run, a sweep, one member) with a value that changes what is computed gets the refusal an
unfinished run gets, and nothing in the workdir changes. Through launch.py, as a user runs it."""

from __future__ import annotations

import pytest

from tests.helpers import TINY_CONFIG_FILE, launch, write_fake_cache


def _snapshot(folder):
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file() and "wandb" not in p.parts and p.name != "lock"}


def _refused(proc, field):
  assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and field in lines[0] and "--allow_config_change" in lines[0], lines
  assert "finished" not in proc.stdout


@pytest.mark.slow
def test_a_finished_run_refuses_a_changed_config(tmp_path):
  config = tmp_path / "tiny.py"
  config.write_text(TINY_CONFIG_FILE.format(cache_dir=write_fake_cache(tmp_path / "cache")))
  base = ["--config", str(config), "--config.num_epochs=1"]

  # A single run (the config without its sweep).
  run = tmp_path / "run"
  assert launch([*base, "--nosweep", "--workdir", str(run)]).returncode == 0
  before = _snapshot(run)
  _refused(launch([*base, "--nosweep", "--workdir", str(run), "--config.model.latent_dim=3"]),
           "model.latent_dim")
  _refused(launch([*base, "--nosweep", "--workdir", str(run), "--config.beta=4"]), "beta")
  assert _snapshot(run) == before
  # Fields that change nothing computed still report the finished run.
  again = launch([*base, "--nosweep", "--workdir", str(run), "--config.eval_batch_size=8"])
  assert again.returncode == 0 and "finished" in again.stdout, again.stderr[-2000:]
  assert _snapshot(run) == before

  # One member of a sweep, then the whole sweep: the finished member is checked too, and
  # the refusal comes before any other member trains.
  sweep = tmp_path / "sweep"
  assert launch([*base, "--workdir", str(sweep), "--member=beta=1"]).returncode == 0
  before = _snapshot(sweep)
  _refused(launch([*base, "--workdir", str(sweep), "--member=beta=1",
                   "--config.model.hidden_sizes=(8,)"]), "model.hidden_sizes")
  _refused(launch([*base, "--workdir", str(sweep), "--config.learning_rate=0.01"]),
           "learning_rate")
  assert _snapshot(sweep) == before
  assert [p.name for p in sweep.iterdir() if p.is_dir()] == ["beta=1"]
