"""Data with ground-truth factors end to end: dSprites in the data layer (bit-packed on
device), the factor lookups of the disentanglement metrics, traversals, and the KL
decomposition logged at every evaluation."""

from __future__ import annotations

import itertools
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests import forkserver
from tests.helpers import ROOT, grid_dataset, launch, tiny_config, write_fake_dsprites
from vae_jax import data as data_lib, models
from vae_jax.analysis import factors as factors_lib
from vae_jax.data import batches, dsprites
from vae_jax.figures import traversals
from vae_jax.objectives import kl_decomposition as kd


def _fake_dsprites(tmp_path, sizes=(3, 2, 2, 4, 4)):
  images, f = write_fake_dsprites(tmp_path / "manual" / "dsprites", sizes)
  c = tiny_config(**{"data.name": "dsprites", "data.binarization": "static"}).data
  c.manual_dir = str(tmp_path / "manual" / "dsprites")
  c.cache_dir = str(tmp_path / "cache")
  return data_lib.load(c), images, f


def test_dsprites_loads_packed_with_its_factors(tmp_path):
  ds, images, f = _fake_dsprites(tmp_path)
  assert ds.packed_shape == (64, 64, 1) and ds.image_shape == (64, 64, 1)
  assert ds.train_images.shape == (len(f), 512) and ds.train_images.dtype == np.uint8
  assert ds.factor_names == dsprites.FACTOR_NAMES and ds.factor_sizes == (3, 2, 2, 4, 4)
  np.testing.assert_array_equal(ds.images("train"), images)  # unpacked = rendered
  np.testing.assert_array_equal(ds.factors("train"), f)
  np.testing.assert_array_equal(ds.test_images, images[::10])  # a fixed subset, unpacked
  np.testing.assert_array_equal(ds.factors("test"), f[::10])


def test_packed_batches_equal_uint8_batches(tmp_path):
  ds, images, _ = _fake_dsprites(tmp_path)
  config = tiny_config()
  idx = jnp.array([0, 5, 17, 100])
  packed = batches.BatchPlan.from_config(config, ds.image_shape, len(images), packed=True)
  plain = batches.BatchPlan.from_config(config, ds.image_shape, len(images)).__class__(
      **{**packed.__dict__, "packed": False})
  u = jnp.zeros((4, 1), jnp.float32)
  x_packed, _ = packed.device_batch(jnp.asarray(ds.train_images), idx, u)
  x_plain, _ = plain.device_batch(jnp.asarray(images.reshape(len(images), -1)), idx, u)
  np.testing.assert_array_equal(np.asarray(x_packed), np.asarray(x_plain))
  assert packed.binarization == "static"  # binary already: no uniforms are drawn


def test_factor_data_looks_up_the_images_of_each_combination():
  ds = grid_dataset()
  data = factors_lib.factor_data(ds)
  f = np.array([[2, 3], [0, 0], [1, 2]])
  obs = data.observations(f, np.random.default_rng(0))
  for row, (a, b) in zip(obs, f):
    assert row[2 * a, 2 * b, 0] == 255 and row.sum() == 4 * 255
  travel = factors_lib.factor_traversal_images(ds, base_index=5)  # factors (1, 1)
  assert list(travel) == ["row", "col"]
  values, imgs = travel["col"]
  assert list(values) == [0, 1, 2, 3]
  for b, img in enumerate(imgs):
    assert img[2, 2 * b, 0] == 255  # row 1 fixed, the column moves


def test_missing_factor_combinations_are_a_user_error():
  ds = grid_dataset()
  keep = ~((ds.train_labels[:, 0] == 1) & (ds.train_labels[:, 1] == 2))
  ds = data_lib.Dataset("grid", "static", ds.train_images[keep], ds.train_labels[keep],
                        ds.test_images, ds.test_labels, ("row", "col"), (3, 4))
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match="every factor combination"):
    factors_lib.factor_data(ds)


@pytest.mark.slow
def test_model_metrics_are_the_nine_scores_and_chens_mig_in_unit_range():
  ds = grid_dataset()
  model = models.from_config(tiny_config(**{"model.latent_dim": 3}).model, (8, 8, 1), nnx.Rngs(0))
  m = factors_lib.disentanglement_metrics(model, ds, seed=0, sample_scale=0.02)
  names = ("beta_vae", "factor_vae", "mig", "mig_chen", "dci_disentanglement",
           "dci_completeness", "dci_informativeness", "sap", "modularity", "explicitness")
  for n in names:
    assert 0.0 <= m[f"disentanglement/{n}"] <= 1.0, n
  assert m["disentanglement/sample_scale"] == 0.02
  assert m["disentanglement/mig_chen_seconds"] <= m["disentanglement/seconds"]
  assert m["not_computed"] == {}  # two factors, three units: every metric is defined
  # An AE has no q(z|x): the nine scores, and no mig_chen key at all, but its reason.
  ae = models.from_config(tiny_config(**{"model.name": "ae", "model.latent_dim": 3}).model,
                          (8, 8, 1), nnx.Rngs(0))
  m = factors_lib.disentanglement_metrics(ae, ds, seed=0, sample_scale=0.02)
  assert "disentanglement/mig_chen" not in m and 0.0 <= m["disentanglement/mig"] <= 1.0
  assert list(m["not_computed"]) == ["disentanglement/mig_chen"]
  assert "q(z|x)" in m["not_computed"]["disentanglement/mig_chen"]


@pytest.mark.slow
def test_a_one_factor_run_reports_no_undefined_metric_and_says_why(tmp_path, capsys):
  # The fake data's one factor is a 10-valued label, as MNIST's: the β-VAE and FactorVAE
  # scores, DCI disentanglement and modularity would be 1 whatever the code (one class / one
  # factor to spread over); the run writes no number for them, and says why.
  from tests.helpers import fake_dataset  # pylint: disable=g-import-not-at-top
  from vae_jax import trainer  # pylint: disable=g-import-not-at-top
  config = tiny_config(num_epochs=1, eval_disentanglement=True, disentanglement_sample_scale=0.05)
  trainer.train_group([config], [tmp_path / "run"], dataset=fake_dataset())
  res = json.loads((tmp_path / "run" / "results.json").read_text())
  undefined = [f"disentanglement/{k}" for k in ("beta_vae", "factor_vae", "dci_disentanglement",
                                                "modularity")]
  for k in ("mig", "mig_chen", "dci_completeness", "dci_informativeness", "sap", "explicitness"):
    assert 0.0 <= res[f"disentanglement/{k}"] <= 1.0, k
  assert not set(undefined) & set(res)
  assert res["not_computed"] == {k: "needs at least 2 factors; 'fake' has 1 (label)"
                                 for k in undefined}
  out = capsys.readouterr().out
  for k in undefined:
    assert f"{tmp_path / 'run'}: {k} not computed: needs at least 2 factors" in out


def test_traversal_rows_move_one_unit_each():
  z = traversals.traversal_codes(np.array([0.5, -1.0, 2.0]), units=[2, 0], limit=3.0, steps=5)
  z = z.reshape(2, 5, 3)
  np.testing.assert_allclose(z[0, :, 2], np.linspace(-3, 3, 5))
  np.testing.assert_allclose(z[0, :, :2], [[0.5, -1.0]] * 5)
  np.testing.assert_allclose(z[1, :, 0], np.linspace(-3, 3, 5))
  assert list(traversals.unit_order([0.1, 3.0, 0.0, 1.0])) == [1, 3, 0, 2]


def test_decomposition_over_a_dataset_is_the_brute_force_one():
  rng = np.random.default_rng(0)
  n, z_dim, p = 5, 2, 3
  mean, logvar = rng.normal(size=(n, z_dim)), 0.3 * rng.normal(size=(n, z_dim))
  eps = rng.normal(size=(p, z_dim))
  mask = np.ones(n)
  # Padding rows with mask 0 must not count as mixture components.
  padded = lambda a, v: np.concatenate([a, np.full((2, z_dim), v)])
  got = kd.decompose_over_dataset(jnp.asarray(padded(mean, 0.0)), jnp.asarray(padded(logvar, 5.0)),
                                  jnp.asarray(eps), jnp.asarray(np.r_[mask, 0, 0]), np.arange(p),
                                  chunk=2)
  z = mean[:p] + np.exp(0.5 * logvar[:p]) * eps
  normal = lambda x, m, lv: np.exp(-0.5 * ((x - m) ** 2 / np.exp(lv) + lv + np.log(2 * np.pi)))
  dens = normal(z[:, None, :], mean[None], logvar[None])  # (p, n, Z)
  log_qzx = np.log(dens[np.arange(p), np.arange(p)]).sum(-1)
  log_qz = np.log(dens.prod(-1).mean(1))
  log_prod = np.log(dens.mean(1)).sum(-1)
  log_pz = np.log(normal(z, 0.0, 0.0)).sum(-1)
  np.testing.assert_allclose(got["index_code_mi"], np.mean(log_qzx - log_qz), rtol=1e-5)
  np.testing.assert_allclose(got["total_correlation"], np.mean(log_qz - log_prod), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(got["dimwise_kl"], np.mean(log_prod - log_pz), rtol=1e-5)
  total = sum(float(got[k]) for k in ("index_code_mi", "total_correlation", "dimwise_kl"))
  np.testing.assert_allclose(total, np.mean(log_qzx - log_pz), rtol=1e-5)


@pytest.mark.slow
def test_factorised_aggregate_posterior_has_no_total_correlation():
  # Posteriors on a full 2-D grid of means: q(z) is (nearly) a product of its marginals.
  g = np.linspace(-2, 2, 12)
  mean = np.array(list(itertools.product(g, g)))
  logvar = np.full_like(mean, np.log(0.3**2))
  eps = np.random.default_rng(1).normal(size=(len(mean), 2))
  got = kd.decompose_over_dataset(jnp.asarray(mean), jnp.asarray(logvar), jnp.asarray(eps),
                                  jnp.ones(len(mean)), np.arange(len(mean)))
  assert abs(float(got["total_correlation"])) < 0.05
  # Perfectly correlated means (a diagonal line) carry total correlation.
  line = np.stack([g, g], 1).repeat(12, 0)
  got = kd.decompose_over_dataset(jnp.asarray(line), jnp.asarray(logvar), jnp.asarray(eps),
                                  jnp.ones(len(line)), np.arange(len(line)))
  assert float(got["total_correlation"]) > 0.5


@pytest.mark.slow
def test_dsprites_trains_from_the_launcher_with_metrics_and_traversals(tmp_path):
  write_fake_dsprites(tmp_path / "manual" / "dsprites")
  wd = tmp_path / "run"
  proc = launch(["--config", str(ROOT / "configs" / "dsprites_vae.py"), "--workdir", str(wd),
                 "--config.num_epochs=1", "--config.batch_size=32", "--config.wandb.mode=disabled",
                 "--config.disentanglement_sample_scale=0.02",
                 f"--config.data.manual_dir={tmp_path / 'manual' / 'dsprites'}",
                 f"--config.data.cache_dir={tmp_path / 'cache'}"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((wd / "results.json").read_text())
  for k in ("beta_vae", "factor_vae", "mig", "mig_chen", "dci_disentanglement",
            "dci_completeness", "dci_informativeness", "sap", "modularity", "explicitness"):
    assert 0.0 <= res[f"disentanglement/{k}"] <= 1.0, k
  parts = [res[f"test/{k}"] for k in ("index_code_mi", "total_correlation", "dimwise_kl")]
  assert all(np.isfinite(parts)) and parts[0] >= -1e-3
  for png in ("traversals.png", "factor_traversals.png", "reconstructions.png"):
    assert (wd / png).stat().st_size > 0, png
  # The command on the finished workdir recomputes them (same seed: same numbers).
  import sys  # pylint: disable=g-import-not-at-top
  again = forkserver.run([sys.executable, "-m", "vae_jax.tools.disentanglement", "--workdir",
                          str(wd), "--sample_scale=0.02"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-2000:]
  res2 = json.loads((wd / "results.json").read_text())
  assert res2["disentanglement/mig"] == pytest.approx(res["disentanglement/mig"], abs=1e-6)
  assert res2["disentanglement/mig_chen"] == pytest.approx(res["disentanglement/mig_chen"],
                                                           abs=1e-6)
  assert "mig_chen=" in again.stdout
  # The latent export writes factor labels as (N, F), aligned with the latents.
  from vae_jax.tools import encode  # pylint: disable=g-import-not-at-top
  written = encode.export_latents(wd, "both")
  labels, codes = np.load(written["labels_train"]), np.load(written["latents_train"])
  assert labels.shape == (192, 5) and codes.shape == (192, 10)
  assert np.load(written["labels_test"]).shape == (20, 5)


def test_tfds_factor_features_are_the_label_class_features():
  from vae_jax.data import tfds  # pylint: disable=g-import-not-at-top

  class ClassLabel:  # what TFDS's ClassLabel offers the reader
    def __init__(self, n):
      self.num_classes = n

  dsprites_like = {"image": object(), "label_shape": ClassLabel(3), "label_scale": ClassLabel(6),
                   "label_orientation": ClassLabel(40), "label_x_position": ClassLabel(32),
                   "label_y_position": ClassLabel(32), "value_scale": object()}
  assert tfds.factor_features(dsprites_like) == (
      ("label_orientation", 40), ("label_scale", 6), ("label_shape", 3),
      ("label_x_position", 32), ("label_y_position", 32))
  assert tfds.factor_features({"image": 0, "label": ClassLabel(10)}) == (("label", 10),)
  assert tfds.factor_features({"image": 0, "caption": 0}) == ()
  arrays = {"label_a": np.array([1, 2]), "label_b": np.array([0, 5])}
  np.testing.assert_array_equal(tfds.labels_of(arrays, (("label_a", 3), ("label_b", 6))),
                                [[1, 0], [2, 5]])
  assert tfds.tfds_name("tfds:dsprites") == "dsprites" and tfds.tfds_name("mnist") == "mnist"


def test_a_tfds_factor_dataset_without_a_test_split_tests_on_a_fixed_subset(tmp_path,
                                                                             monkeypatch):
  from vae_jax.data import tfds  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  n = 300
  images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
  labels = np.stack([rng.integers(0, 4, n), rng.integers(0, 5, n)], 1).astype(np.int32)

  def prepare(config, split):  # stands in for TFDS: a dataset with only a train split
    if split != "train":
      raise tfds.SplitMissing(split)
    return images, labels, ("label_hue", "label_shape"), (4, 5)

  monkeypatch.setattr(tfds, "_prepare_with_tfds", prepare)
  c = tiny_config(**{"data.name": "shapes_like", "data.binarization": "none",
                     "model.likelihood": "gaussian"}).data
  c.cache_dir = str(tmp_path)
  ds = data_lib.load(c)
  assert ds.factor_names == ("label_hue", "label_shape") and ds.factor_sizes == (4, 5)
  np.testing.assert_array_equal(ds.train_labels, labels)
  assert len(ds.test_images) == n  # all of a small set; 10,000 of a large one
  again = data_lib.load(c)  # from the cache, factor names and sizes included
  assert again.factor_names == ds.factor_names and again.factor_sizes == (4, 5)
  np.testing.assert_array_equal(again.test_labels, ds.test_labels)


def test_study_configs_are_one_vectorised_group_per_family():
  from vae_jax import sweeps, trainer, validate  # pylint: disable=g-import-not-at-top
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  beta = sweeps.load_module(str(ROOT / "configs" / "dsprites_beta.py"))
  members = sweeps.expand(beta.get_config(), sweeps.sweep_of(beta))
  assert [o["beta"] for _, o, _ in members] == [1.0, 2.0, 4.0, 6.0, 8.0, 16.0]
  assert len({trainer.group_key(c) for _, _, c in members}) == 1
  study = sweeps.load_module(str(ROOT / "configs" / "dsprites_locatello.py"))
  for family in study.FAMILIES:
    config = study.get_config(family)
    members = sweeps.expand(config, sweeps.sweep_of(study, family))
    assert len(members) == 6
    for _, _, c in members:
      validate.validate(c)
      assert c.model.conv_channels == (32, 32, 64, 64) and c.batch_size == 64
    assert len({trainer.group_key(c) for _, _, c in members}) == 1, family
  dip = sweeps.sweep_of(study, "dip_vae_i")
  assert all(m["dip_vae.lambda_d"] == 10 * m["dip_vae.lambda_od"] for m in dip.values())
  assert all(m["dip_vae.lambda_d"] == m["dip_vae.lambda_od"]
             for m in sweeps.sweep_of(study, "dip_vae_ii").values())
  with pytest.raises(UserError, match="not a model family"):
    sweeps.sweep_of(study, "vq_vae")
