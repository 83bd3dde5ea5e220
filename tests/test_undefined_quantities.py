"""Issue 31, class 2: a quantity that is undefined for a run is absent from what it reports,
with one line saying why, never a number. Through launch.py, as a user runs it."""

from __future__ import annotations

import json

import pytest

from tests.helpers import TINY_CONFIG_FILE, launch, tiny_config, write_fake_cache
from vae_jax import finish


def test_each_family_declares_what_it_does_not_define():
  ae = finish.undefined_quantities(tiny_config(eval_nll_k=8, **{"model.name": "ae"}))
  assert set(ae) == {"test/kl", "test/neg_elbo", "train/kl", "train/neg_elbo", "test/nll",
                     "test/index_code_mi", "test/total_correlation", "test/dimwise_kl"}
  assert "no likelihood" in ae["test/nll"] and "AE" in ae["test/nll"]
  # A VAE defines everything; without eval_nll_k nothing about test/nll is said.
  assert finish.undefined_quantities(tiny_config(eval_nll_k=8)) == {}
  assert "test/nll" not in finish.undefined_quantities(tiny_config(**{"model.name": "ae"}))
  # The VampPrior's prior is no product of per-unit priors: only its dimension-wise KL goes.
  vamp = finish.undefined_quantities(tiny_config(**{"model.name": "vampprior_vae"}))
  assert list(vamp) == ["test/dimwise_kl"] and "factorised prior" in vamp["test/dimwise_kl"]
  two = finish.undefined_quantities(tiny_config(**{"model.name": "two_layer_vae"}))
  assert set(two) == {"test/index_code_mi", "test/total_correlation", "test/dimwise_kl"}
  # Off means not asked: nothing to explain.
  assert finish.undefined_quantities(
      tiny_config(kl_decomposition_points=0, **{"model.name": "two_layer_vae"})) == {}


@pytest.mark.slow
def test_an_ae_run_reports_no_kl_elbo_or_likelihood(tmp_path):
  config = tmp_path / "tiny.py"
  config.write_text(TINY_CONFIG_FILE.format(cache_dir=write_fake_cache(tmp_path / "cache")))
  run = tmp_path / "ae"
  proc = launch(["--config", str(config), "--nosweep", "--workdir", str(run),
                 "--config.num_epochs=1", "--config.model.name=ae", "--config.eval_nll_k=4"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  results = json.loads((run / "results.json").read_text())
  undefined = ("test/kl", "test/neg_elbo", "test/nll", "train/kl", "train/neg_elbo",
               "test/total_correlation")
  assert not set(undefined) & set(results), sorted(results)
  assert set(undefined) <= set(results["not_computed"])
  assert results["test/rec"] > 0 and results["test/loss"] == results["test/rec"]
  # Each undefined test quantity is said once, on one line, and the per-epoch log has none.
  lines = [l for l in proc.stdout.splitlines() if "not computed" in l]
  assert any(l.endswith("test/nll not computed: an AE defines no likelihood p(x)")
             for l in lines), proc.stdout
  assert len(lines) == len({l.split(" not computed")[0] for l in lines})
  logged = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  assert logged and not any(set(undefined) & set(r) for r in logged)
  assert "Traceback" not in proc.stderr
