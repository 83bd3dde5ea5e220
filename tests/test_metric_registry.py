"""The metrics registry (`vae_jax.analysis.metrics`): one loop over the table, and each metric's
preconditions: a metric that is undefined or trivially perfect on the data (one factor, as
MNIST's label; a constant factor; a one-dimensional code; too few points per value) is absent
from the results with its reason, never a score."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT
from vae_jax.analysis import disentanglement as dis
from vae_jax.analysis import factors as factors_lib
from vae_jax.analysis import metrics

SCALE = 0.05  # 500 training points where the study uses 10,000
NEED_TWO_FACTORS = ("beta_vae", "factor_vae", "dci_disentanglement", "modularity")
DEFINED_FOR_ONE_FACTOR = ("mig", "dci_completeness", "dci_informativeness", "sap",
                          "explicitness")


def _grid(sizes):
  return np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"),
                  -1).reshape(-1, len(sizes))


def _data(sizes, names=None):
  """The full grid of factor indices, observed as themselves."""
  grid = _grid(sizes)
  return dis.factor_data_from_arrays(grid.astype(np.float64), grid, sizes, names)


def _noise(dim, seed=1):
  rng = np.random.default_rng(seed)
  return lambda x: rng.normal(size=(len(x), dim))


def _truth_plus_noise(sizes, extra=1):
  """Each factor's index (standardised) in its own dimension, plus `extra` noise dimensions."""
  scale = np.asarray(sizes, np.float64)
  rng = np.random.default_rng(0)
  return lambda x: np.concatenate([(np.asarray(x) - (scale - 1) / 2) / scale,
                                   rng.normal(size=(len(x), extra))], axis=1)


def _evaluate(data, representation, names=None, scale=SCALE, **kw):
  """The metrics computed from codes alone (all but mig_chen), or `names`."""
  names = [m.name for m in metrics.REGISTRY.values() if m.needs == metrics.CODES
           ] if names is None else names
  return metrics.evaluate(metrics.Inputs(data, representation, 0, num_samples_scale=scale, **kw),
                          names)


def test_the_registry_is_the_one_list_of_metrics_and_keys():
  assert dis.SCORE_KEYS == ("beta_vae", "factor_vae", "mig", "dci_disentanglement",
                            "dci_completeness", "dci_informativeness", "sap", "modularity",
                            "explicitness")
  keys = [k for m in metrics.REGISTRY.values() for k in m.keys]
  assert len(keys) == len(set(keys)) == 10 and "mig_chen" in keys
  assert metrics.result_keys() == tuple(f"disentanglement/{k}" for k in keys)
  assert metrics.REGISTRY["dci"].keys == ("dci_disentanglement", "dci_completeness",
                                          "dci_informativeness")
  assert metrics.REGISTRY["mig_chen"].needs == metrics.POSTERIORS
  for m in metrics.REGISTRY.values():  # every metric states its preconditions
    assert m.requires and all(r.summary for k in m.keys for r in m.requirements(k)), m.name
  with pytest.raises(ValueError, match="unknown metric"):
    _evaluate(_data((2, 2)), _noise(2), ["mig", "informativeness"])
  assert "| dci (" in metrics.table()
  # Without a model there is no q(z|x): mig_chen says so rather than being skipped silently.
  alone = metrics.evaluate(metrics.Inputs(_data((2, 2)), _noise(2), 0), ["mig_chen"])
  assert alone.scores == {} and "q(z|x)" in alone.not_computed["mig_chen"]


@pytest.mark.filterwarnings("ignore:Label not 0 is present in all training examples")
def test_one_factor_gives_no_trivial_scores_and_says_why():
  # MNIST-like: one factor of 10 values. A code of pure noise gets 1.0 from the β-VAE and
  # FactorVAE scores (every point's label is the one factor) and from DCI disentanglement and
  # modularity (nothing to spread over): those are not answers, so they are not reported.
  data = _data((10,), ("label",))
  noise = _noise(4)
  kw = dict(num_train=100, num_eval=100)
  assert dis.beta_vae_score(data, noise, 0, **kw)["beta_vae"] == 1.0
  assert dis.factor_vae_score(data, noise, 0, num_variance_estimate=200, **kw)["factor_vae"] == 1.0
  assert dis.modularity_from_mi(np.array([[0.3], [0.01]])) == 1.0
  assert dis.dci_from_importance(np.array([[0.9], [0.1]]))[0] == pytest.approx(1.0)

  result = _evaluate(data, _noise(4), dataset_name="mnist")
  assert set(result.scores) == set(DEFINED_FOR_ONE_FACTOR)
  assert set(result.not_computed) == set(NEED_TWO_FACTORS)
  for k in NEED_TWO_FACTORS:
    assert result.not_computed[k] == "needs at least 2 factors; 'mnist' has 1 (label)"
  # What is reported is what the metric says of noise: about nothing, not a perfect score.
  assert result.scores["mig"] < 0.05 and result.scores["sap"] < 0.05
  assert abs(result.scores["explicitness"] - 0.5) < 0.05
  assert abs(result.scores["dci_informativeness"] - 0.1) < 0.06
  # And of a code that holds the label in one unit: MIG and informativeness near 1.
  good = _evaluate(data, _truth_plus_noise((10,)), dataset_name="mnist").scores
  assert good["mig"] > 0.9 and good["dci_informativeness"] > 0.95 and good["explicitness"] > 0.9
  # compute_all, the old entry point, returns the same numbers (from the same fresh noise),
  # without the undefined keys.
  assert dis.compute_all(data, _noise(4), 0, num_samples_scale=SCALE) == result.scores


def test_two_factors_give_every_score():
  data = _data((3, 4))
  result = _evaluate(data, _truth_plus_noise((3, 4)))
  assert tuple(result.scores) == dis.SCORE_KEYS and result.not_computed == {}
  assert result.scores == dis.compute_all(data, _truth_plus_noise((3, 4)), 0,
                                          num_samples_scale=SCALE)
  for k in ("beta_vae", "factor_vae", "dci_disentanglement"):
    assert result.scores[k] > 0.9, k
  # Two units each hold one factor (modularity 1 each); the noise unit's plug-in MI with the
  # two factors is small and alike, so it scores near 0: about 2/3 in all.
  assert 0.6 < result.scores["modularity"] < 0.8


def test_a_constant_factor_is_left_out_of_mig_and_stops_the_others():
  # Factor "colour" takes one value. MIG leaves it out of its average (its entropy is 0); the
  # β-VAE and FactorVAE scores would have a class "held fixed" that fixes nothing, DCI's, SAP's
  # and explicitness' classifiers cannot be fitted to one class, and modularity would compare
  # each code with a factor nothing can inform.
  data = _data((3, 1, 4), ("row", "colour", "col"))
  result = _evaluate(data, _truth_plus_noise((3, 1, 4)), dataset_name="grid")
  assert set(result.scores) == {"mig"}
  for k in set(dis.SCORE_KEYS) - {"mig"}:
    assert result.not_computed[k] == ("needs every factor to take at least 2 values; in 'grid' "
                                      "colour takes 1"), k
  assert result.scores["mig"] > 0.9  # the two factors that vary are each in their own unit
  only = _evaluate(_data((1, 1)), _noise(3), ["mig"])
  assert only.scores == {} and "needs a factor that takes at least 2 values" in (
      only.not_computed["mig"])


def test_a_one_dimensional_code_has_no_gap_between_its_top_two_units():
  data = _data((3, 4))
  result = _evaluate(data, lambda x: np.asarray(x, np.float64)[:, :1])
  gaps = {"mig", "sap", "dci_completeness"}
  assert set(result.not_computed) == gaps
  for k in gaps:
    assert "needs at least 2 code dimensions" in result.not_computed[k]
    assert result.not_computed[k].endswith("the code has 1")
  assert set(result.scores) == set(dis.SCORE_KEYS) - gaps


def test_too_few_points_per_value_are_not_scored():
  # 40 orientations need 200 training points; sample_scale 0.01 draws 100.
  data = _data((40, 2), ("orientation", "shape"))
  result = _evaluate(data, _noise(3), scale=0.01)
  assert set(result.scores) == {"beta_vae", "factor_vae"}  # 100 points for 2 factors is plenty
  assert result.not_computed["mig"] == (
      "needs at least 5 training points per factor value, 200 for the 40 values of "
      "orientation; sample_scale 0.01 gives 100")
  assert "mig" in _evaluate(data, _noise(3), ["mig"], scale=0.02).scores  # 200 points: enough


def test_results_json_keeps_numbers_and_reasons_apart():
  old = {"test/kl": 3.0, "disentanglement/beta_vae": 1.0,
         "not_computed": {"disentanglement/mig": "older reason", "test/nll": "an AE"}}
  new = {"disentanglement/mig": 0.4, "disentanglement/seconds": 2.0,
         "not_computed": {"disentanglement/beta_vae": "needs at least 2 factors"}}
  merged = factors_lib.merge_results(dict(old), new)
  assert merged == {"test/kl": 3.0, "disentanglement/mig": 0.4, "disentanglement/seconds": 2.0,
                    "not_computed": {"test/nll": "an AE",
                                     "disentanglement/beta_vae": "needs at least 2 factors"}}
  assert factors_lib.merge_results({"a/b": 1.0}, {"not_computed": {}}) == {"a/b": 1.0}
  assert factors_lib.not_computed_lines("runs/x", new) == [
      "runs/x: disentanglement/beta_vae not computed: needs at least 2 factors"]


def test_reading_the_registry_leaves_scikit_learn_unimported():
  """Every sweep reads the registry for its sweep.csv columns; scikit-learn (a second of
  imports) is imported only by a metric that is computed."""
  code = ("import sys; from vae_jax import sweep_table;"
          " cols = sweep_table.metric_columns([{'disentanglement/mig': 0.1, 'test/kl': 1.0}]);"
          " assert cols == ['test/kl', 'disentanglement/mig'], cols;"
          " assert 'sklearn' not in sys.modules, 'sklearn imported'")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
