"""Training on fake data: the loss falls, resuming is exact, outputs follow the contract."""

import json

import numpy as np
import pytest

from tests.helpers import fake_dataset, final_params, tiny_config
from vae_jax import trainer


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_a_few_epochs_lower_the_loss(tmp_path, kind):
  ds = fake_dataset(n_train=256)
  config = tiny_config(num_epochs=6, learning_rate=1e-2, write_figures=True, **{"model.name": kind})
  trainer.train_group([config], [tmp_path], dataset=ds)
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [16 * (i + 1) for i in range(6)]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 5.0
  score = "test/neg_elbo" if kind == "vae" else "test/rec"  # an AE has no ELBO
  assert rows[-1][score] < rows[0][score]
  results = json.loads((tmp_path / "results.json").read_text())
  for key in ("test/loss", "test/rec", "train/examples_per_s", "train/seconds"):
    assert np.isfinite(results[key]), key
  if kind == "ae":  # no KL, no ELBO: absent, with the reason (tests/test_undefined_quantities.py)
    assert "test/kl" not in results and "test/neg_elbo" not in results
    assert "test/kl" in results["not_computed"]
  else:
    assert np.isfinite(results["test/kl"]) and np.isfinite(results["test/neg_elbo"])
  for f in ("config.json", "reconstructions.png", "samples.png"):
    assert (tmp_path / f).stat().st_size > 0
  assert (tmp_path / "checkpoints").is_dir()


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run_exactly(tmp_path):
  ds = fake_dataset()
  straight = tiny_config(num_epochs=4)
  trainer.train_group([straight], [tmp_path / "a"], dataset=ds)

  first = tiny_config(num_epochs=2)
  trainer.train_group([first], [tmp_path / "b"], dataset=ds)
  assert json.loads((tmp_path / "b" / "results.json").read_text())["epochs"] == 2
  trainer.train_group([tiny_config(num_epochs=4)], [tmp_path / "b"], dataset=ds)

  for pa, pb in zip(final_params(straight, tmp_path / "a", ds),
                    final_params(straight, tmp_path / "b", ds)):
    np.testing.assert_array_equal(pa, pb)
  ra = json.loads((tmp_path / "a" / "results.json").read_text())
  rb = json.loads((tmp_path / "b" / "results.json").read_text())
  for k in ("test/neg_elbo", "test/rec", "test/kl", "train/loss"):
    assert ra[k] == rb[k], k
  ma = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
  mb = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in ma] == [r["step"] for r in mb]
  assert [r["train/loss"] for r in ma] == [r["train/loss"] for r in mb]
  assert not list((tmp_path / "a").glob("*.png"))  # write_figures=False: the run's PNGs skipped


def test_finished_run_relaunched_only_reports(tmp_path, capsys):
  ds = fake_dataset()
  config = tiny_config(num_epochs=1)
  trainer.train_group([config], [tmp_path], dataset=ds)
  before = (tmp_path / "metrics.jsonl").read_text()
  capsys.readouterr()
  trainer.train_group([config], [tmp_path], dataset=ds)
  assert "finished" in capsys.readouterr().out
  assert (tmp_path / "metrics.jsonl").read_text() == before


def test_resuming_under_a_changed_config_is_refused(tmp_path):
  ds = fake_dataset()
  trainer.train_group([tiny_config(num_epochs=1)], [tmp_path], dataset=ds)
  with pytest.raises(trainer.UserError, match="model.latent_dim"):
    trainer.train_group([tiny_config(num_epochs=2, **{"model.latent_dim": 3})], [tmp_path], dataset=ds)


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  ds = fake_dataset()
  config = tiny_config(num_epochs=3, learning_rate=1e12, **{"optimizer.name": "sgd",
                                                             "optimizer.b1": 0.0})
  with pytest.raises(trainer.DivergenceError, match=r"step \d+"):
    trainer.train_group([config], [tmp_path], dataset=ds)
  assert not (tmp_path / "results.json").exists()
  assert json.loads((tmp_path / "failed.json").read_text())["step"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("likelihood,binarization", [("gaussian", "none"), ("laplace", "none"),
                                                      ("bernoulli", "static")])
def test_other_likelihoods_and_binarizations_train(tmp_path, likelihood, binarization):
  ds = fake_dataset(binarization=binarization)
  config = tiny_config(num_epochs=2, **{"model.likelihood": likelihood,
                                        "model.learn_scale": likelihood == "gaussian",
                                        "data.binarization": binarization})
  res = trainer.train_group([config], [tmp_path], dataset=ds)[0]
  assert np.isfinite(res["test/neg_elbo"])
