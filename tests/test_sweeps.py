"""Sweeps: vectorised members equal separate runs; relaunches skip finished members;
summaries, figures and the W&B export."""

import csv
import sys

import numpy as np
import pytest
import yaml

from tests import forkserver
from tests.helpers import ROOT, TINY_CONFIG_FILE, fake_dataset, launch, tiny_config, write_fake_cache
from tests.helpers import final_params
from vae_jax import sweeps, trainer, workdir
from vae_jax.errors import UserError


@pytest.mark.slow
def test_vectorised_group_equals_members_run_one_by_one(tmp_path):
  ds = fake_dataset()
  configs = [tiny_config(beta=b, learning_rate=lr, seed=s)
             for b, lr, s in ((0.5, 1e-3, 0), (1.0, 3e-3, 1), (4.0, 1e-3, 2))]
  together = trainer.train_group(configs, [tmp_path / f"v{i}" for i in range(3)], dataset=ds)
  assert all(r["members_trained_together"] == 3 for r in together)
  for i, c in enumerate(configs):
    alone = trainer.train_group([c], [tmp_path / f"s{i}"], dataset=ds)[0]
    assert alone["members_trained_together"] == 1
    for k in ("test/neg_elbo", "test/rec", "test/kl", "test/loss", "train/loss"):
      np.testing.assert_allclose(together[i][k], alone[k], rtol=1e-5, err_msg=k)
    for a, b in zip(final_params(c, tmp_path / f"v{i}", ds), final_params(c, tmp_path / f"s{i}", ds)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # Members really differ: different betas give different rates.
  assert together[0]["test/kl"] > together[2]["test/kl"]


def _tiny_sweep_config(tmp_path):
  cache = write_fake_cache(tmp_path / "cache")
  path = tmp_path / "tiny_sweep.py"
  path.write_text(TINY_CONFIG_FILE.format(cache_dir=cache))
  module = sweeps.load_module(str(path))
  return path, module


@pytest.mark.slow
def test_sweep_writes_summary_and_relaunch_trains_only_the_rest(tmp_path):
  path, module = _tiny_sweep_config(tmp_path)
  config, sweep = module.get_config(), module.get_sweep()
  wd = tmp_path / "sweep"
  sweeps.run_sweep(config, sweep, wd, sweep_name="tiny", only="beta=1")
  first = (wd / "beta=1" / "metrics.jsonl").read_text()
  assert not (wd / "beta=0.5").exists()

  rows = sweeps.run_sweep(config, sweep, wd, sweep_name="tiny")
  assert (wd / "beta=1" / "metrics.jsonl").read_text() == first  # not retrained
  for b in ("0.5", "2"):
    assert (wd / f"beta={b}" / "results.json").exists()
    assert workdir.read_results(wd / f"beta={b}")["members_trained_together"] == 2
  with open(wd / "sweep.csv") as f:
    table = list(csv.DictReader(f))
  assert [r["member"] for r in table] == ["beta=0.5", "beta=1", "beta=2"]
  assert [float(r["beta"]) for r in table] == [0.5, 1.0, 2.0]
  assert all(r["status"] == "finished" and float(r["test/neg_elbo"]) > 0 for r in table)
  assert len(rows) == 3
  assert (wd / "rate_distortion.png").stat().st_size > 0


@pytest.mark.slow
def test_seeds_option_adds_replicates_and_their_mean(tmp_path, capsys):
  path, module = _tiny_sweep_config(tmp_path)
  config = module.get_config()
  with config.unlocked():
    config.num_epochs = 1
  # One seed first: beta=0.5 as the seeded sweep will have it, beta=2 with another learning
  # rate, so only the first is the same run as a seeded member.
  wd = tmp_path / "s"
  sweeps.run_sweep(config, [{"beta": 0.5}], wd, sweep_name="tiny")
  other = sweeps.apply_overrides(config, {"learning_rate": config.learning_rate * 2})
  sweeps.run_sweep(other, [{"beta": 2.0}], wd, sweep_name="tiny")
  one_seed = (wd / "beta=0.5" / "metrics.jsonl").read_text()
  capsys.readouterr()

  with config.unlocked():
    config.num_seeds = 2
  sweeps.run_sweep(config, [{"beta": 0.5}, {"beta": 2.0}], wd, sweep_name="tiny")
  out = capsys.readouterr().out
  linked = [line for line in out.splitlines() if "one-seed run" in line]
  assert len(linked) == 1 and "beta=0.5,seed=0: the finished one-seed run" in linked[0]
  reused = wd / "beta=0.5,seed=0"
  assert reused.is_symlink() and reused.resolve() == (wd / "beta=0.5").resolve()
  assert (reused / "metrics.jsonl").read_text() == one_seed  # not trained again
  assert not (wd / "beta=2,seed=0").is_symlink()  # another learning rate: trained anew
  # A member resumes under another seed count (its seed is its own), not under another seed.
  workdir.check_resumable(wd / "beta=0.5,seed=1",
                          sweeps.apply_overrides(config, {"beta": 0.5, "seed": 1, "num_seeds": 3}))
  with pytest.raises(UserError, match="seed"):
    workdir.check_resumable(wd / "beta=0.5,seed=1",
                            sweeps.apply_overrides(config, {"beta": 0.5, "seed": 2}))
  assert workdir.read_results(wd / "beta=2,seed=0")["members_trained_together"] == 3
  assert [p for p, _ in workdir.find_runs(wd)].count(wd / "beta=0.5") == 1
  assert len(workdir.find_runs(wd)) == 5  # beta=0.5 once, beta=2 (one seed) and three new
  with open(wd / "sweep.csv") as f:
    table = list(csv.DictReader(f))
  assert [r["member"] for r in table] == ["beta=0.5,seed=0", "beta=0.5,seed=1", "beta=2,seed=0",
                                          "beta=2,seed=1"]
  assert all(r["status"] == "finished" for r in table)
  with open(wd / "sweep_seeds.csv") as f:
    agg = list(csv.DictReader(f))
  assert len(agg) == 2 and all(r["n"] == "2" for r in agg)
  vals = [float(r["test/neg_elbo"]) for r in table[:2]]
  assert float(agg[0]["test/neg_elbo"]) == pytest.approx(np.mean(vals), rel=1e-6)
  assert float(agg[0]["test/neg_elbo:std"]) == pytest.approx(np.std(vals, ddof=1), rel=1e-5)


@pytest.mark.parametrize("sweep,needle", [
    ([], "empty"),
    ([{"beta": 1.0}, {"beta": 1.0}], "duplicate"),
    ([{"model.latent_dimension": 3}], "not a config field"),
    ([{"beta": -1.0}], "beta"),
])
def test_bad_sweep_definitions_fail_before_training(tmp_path, sweep, needle):
  with pytest.raises(UserError, match=needle):
    sweeps.run_sweep(tiny_config(), sweep, tmp_path / "s", sweep_name="bad")
  assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_exported_wandb_sweep_parses_and_its_command_runs_one_member(tmp_path):
  path, module = _tiny_sweep_config(tmp_path)
  out = tmp_path / "sweep.yaml"
  wd = tmp_path / "agent_runs"
  proc = launch(["--config", str(path), "--workdir", str(wd), "--export_wandb_sweep", str(out)])
  assert proc.returncode == 0, proc.stderr[-2000:]
  spec = yaml.safe_load(out.read_text())
  assert spec["method"] == "grid"
  assert spec["parameters"] == {"config.beta": {"values": [0.5, 1.0, 2.0]}}
  # What `wandb agent` runs for the grid point beta=2.0:
  args = {"${env}": [], "${interpreter}": [sys.executable], "${program}": [str(ROOT / spec["program"])],
          "${args}": ["--config.beta=2.0"]}
  cmd = [a for part in spec["command"] for a in args.get(part, [part])]
  run = forkserver.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-2000:]
  assert (wd / "beta=2" / "results.json").exists()
  assert not (wd / "beta=0.5").exists()


def test_non_grid_sweeps_cannot_be_exported():
  with pytest.raises(UserError, match="not a grid"):
    sweeps.wandb_sweep_spec([{"beta": 1.0, "seed": 0}, {"beta": 2.0, "seed": 1}],
                            config_path="c.py", workdir="w", sweep_name="s")


def test_sweep_csv_columns_are_the_metrics_the_members_hold(tmp_path):
  # No list of metrics: a number that any member's results.json holds is a column (a new
  # metric too), in the order test/*, disentanglement/* (the registry's order), train/*, other
  # families; reasons for metrics not computed and bookkeeping are not columns.
  from vae_jax import sweep_table  # pylint: disable=g-import-not-at-top
  members = []
  for b, seed in ((0.5, 0), (0.5, 1), (2.0, 0)):
    name = f"beta={b:g},seed={seed}"
    (tmp_path / name).mkdir()
    res = {"epochs": 2, "steps": 4, "test/dimwise_kl": 0.1, "test/rec": 10.0 + seed,
           "test/neg_elbo": 12.0, "train/compile_seconds": 0.5, "train/loss": 11.0,
           "disentanglement/seconds": 3.0, "disentanglement/sap": 0.1 * b,
           "disentanglement/beta_vae": 0.9, "memory/max_rss_bytes": 1000,
           "not_computed": {"disentanglement/mig_chen": "an AE has no posterior q(z|x)"}}
    if seed == 1:
      res["disentanglement/new_score"] = 0.25 + b
    workdir.write_json(tmp_path / name / "results.json", res)
    members.append((name, {"beta": b, "seed": seed}, None))
  sweep_table.write_summary(tmp_path, members, ["beta", "seed"])
  with open(tmp_path / "sweep.csv") as f:
    table = list(csv.DictReader(f))
  assert list(table[0]) == [
      "member", "beta", "seed", "status", "test/neg_elbo", "test/rec", "test/dimwise_kl",
      "disentanglement/beta_vae", "disentanglement/sap", "disentanglement/new_score",
      "disentanglement/seconds", "train/loss", "train/compile_seconds", "memory/max_rss_bytes"]
  assert [r["disentanglement/new_score"] for r in table] == ["", "0.75", ""]
  with open(tmp_path / "sweep_seeds.csv") as f:
    agg = list(csv.DictReader(f))
  assert [float(r["test/rec"]) for r in agg] == [10.5, 10.0]
  assert agg[0]["disentanglement/new_score"] == "0.75" and agg[0]["n"] == "2"
  assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".sweep*"))
