"""Figures: each writes a non-empty PNG for a tiny random model; grid and PCA properties."""

import math

import jax
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from vae_jax import figures, models, sweep_table
from vae_jax.analysis import probes
from vae_jax.figures import sweeps as sweep_figures


def _tiny(kind, latent_dim=2):
  return models.AutoEncoder(kind=kind, architecture="mlp", image_shape=(6, 6, 1),
                            latent_dim=latent_dim, hidden_sizes=(8,), activation="tanh",
                            likelihood="bernoulli", scale=1.0, learn_scale=False,
                            rngs=nnx.Rngs(0))


def _data(n=60):
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (n, 6, 6, 1)).astype(np.uint8), rng.integers(0, 10, n)


def _is_png(path):
  with open(path, "rb") as f:
    head = f.read(8)
  return head == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_vae_manifold_uses_inverse_normal_cdf_of_quantiles():
  z1, z2 = figures.manifold_axes("vae", 10)
  want = stats.norm.ppf(np.linspace(0.05, 0.95, 10))
  np.testing.assert_allclose(z1, want, rtol=1e-5)
  np.testing.assert_allclose(z2, want, rtol=1e-5)
  assert z1[0] == pytest.approx(-1.6449, abs=1e-3)


def test_ae_manifold_spans_the_latents_it_occupies():
  lat = np.random.default_rng(1).normal([10.0, -3.0], [2.0, 0.1], size=(5000, 2))
  z1, z2 = figures.manifold_axes("ae", 10, lat)
  assert z1[0] == pytest.approx(np.percentile(lat[:, 0], 1)) and z1[-1] == pytest.approx(np.percentile(lat[:, 0], 99))
  assert z2[0] == pytest.approx(np.percentile(lat[:, 1], 1)) and z2[-1] == pytest.approx(np.percentile(lat[:, 1], 99))
  assert np.allclose(np.diff(z1), np.diff(z1)[0])


@pytest.mark.slow
def test_decoded_manifold_rows_run_top_down_in_z2():
  model = _tiny("vae")
  z1, z2 = np.array([-1.0, 0.0, 1.0]), np.array([-2.0, 2.0])
  imgs = figures.decode_manifold(model, z1, z2)
  from vae_jax import latents
  np.testing.assert_allclose(imgs[0], latents.decode_means(model, np.array([[-1.0, 2.0]]))[0],
                             atol=1e-6)  # top-left: smallest z1, largest z2
  np.testing.assert_allclose(imgs[-1], latents.decode_means(model, np.array([[1.0, -2.0]]))[0],
                             atol=1e-6)


def test_pca_recovers_a_dominant_direction():
  rng = np.random.default_rng(0)
  direction = np.array([3.0, -1.0, 2.0, 0.5, 1.0])
  direction /= np.linalg.norm(direction)
  x = 5.0 * rng.normal(size=(2000, 1)) * direction + 0.1 * rng.normal(size=(2000, 5)) + 7.0
  mean, comps, ratio = probes.pca(x, 2)
  proj = probes.pca_transform(x, mean, comps)
  assert abs(comps[0] @ direction) > 0.999
  assert comps[0][np.argmax(np.abs(comps[0]))] > 0  # deterministic sign
  assert ratio[0] > 0.98 and proj.shape == (2000, 2)
  np.testing.assert_allclose(proj.mean(0), 0.0, atol=1e-5)  # float32 projections
  np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_model_figures_write_pngs(tmp_path, kind):
  model, (images, labels) = _tiny(kind), _data()
  lat = np.random.default_rng(0).normal(size=(60, 2))
  paths = [
      figures.save_samples(tmp_path / "s.png", model, jax.random.key(0), 16, images),
      figures.save_manifold(tmp_path / "m.png", model, lat, n=5),
      figures.save_latent_scatter(tmp_path / "sc.png", lat, labels),
      figures.save_latent_scatter(tmp_path / "pca.png", np.random.default_rng(0).normal(size=(60, 5)), labels),
      figures.save_interpolations(tmp_path / "i.png", model, images[:3], images[3:6], steps=5,
                                  labels=["a", "b", "c"]),
  ]
  for p in paths:
    assert _is_png(tmp_path / p.split("/")[-1]), p


@pytest.mark.slow
def test_ae_vs_vae_figure(tmp_path):
  images, labels = _data()
  path = figures.save_ae_vs_vae(tmp_path / "cmp.png", _tiny("ae"), _tiny("vae"), images, labels, n=4)
  assert _is_png(tmp_path / "cmp.png") and path.endswith("cmp.png")


def test_manifold_needs_two_latent_dims(tmp_path):
  with pytest.raises(ValueError, match="2-D"):
    figures.save_manifold(tmp_path / "m.png", _tiny("vae", latent_dim=3))


def _rows():
  rows = []
  for beta, rec, kl in ((0.5, 70.0, 35.0), (1.0, 75.0, 26.0), (4.0, 100.0, 10.0)):
    for seed in (0, 1):
      rows.append({"beta": beta, "seed": seed, "model.latent_dim": 20, "workdir": f"b{beta}s{seed}",
                   "test/rec": rec + seed, "test/kl": kl - seed, "test/neg_elbo": rec + kl})
  return rows


def test_replicates_are_grouped_over_seeds_only():
  groups = sweep_table.group_replicates(_rows(), ("test/rec", "test/kl"))
  assert len(groups) == 3 and all(g["n"] == 2 for g in groups)
  g = next(g for g in groups if g["beta"] == 4.0)
  assert g["test/rec"] == pytest.approx(100.5)
  assert g["test/rec:std"] == pytest.approx(math.sqrt(0.5))
  assert "seed" not in g and "workdir" not in g


def test_sweep_figures_write_pngs(tmp_path):
  import csv
  with open(tmp_path / "sweep.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(_rows()[0]))
    w.writeheader()
    w.writerows(_rows())
  rows = sweep_table.read_csv(tmp_path / "sweep.csv")
  assert rows[0]["beta"] == 0.5 and rows[0]["seed"] == 0
  sweep_figures.plot_rate_distortion(rows, tmp_path / "rd.png")
  sizes = [{"model.name": k, "model.latent_dim": d, "test/rec": 100.0 / d, "test/neg_elbo": 100.0 + d,
            "seed": 0} for k in ("ae", "vae") for d in (2, 5, 10)]
  sweep_figures.plot_latent_size(sizes, tmp_path / "ls.png")
  assert _is_png(tmp_path / "rd.png") and _is_png(tmp_path / "ls.png")


@pytest.mark.parametrize("latent_dim", [2, 3])
def test_run_latent_figures(tmp_path, latent_dim):
  images, labels = _data()
  paths = figures.save_latent_figures(tmp_path, _tiny("vae", latent_dim), images, labels)
  assert set(paths) == ({"latents", "manifold"} if latent_dim == 2 else {"latents"})
  assert all(_is_png(tmp_path / f"{name}.png") for name in paths)


def test_interpolation_pairs_go_between_the_named_digits():
  labels = np.array([3, 0, 6, 6, 1, 7, 0])
  ia, ib, names = figures.interpolation_pairs(labels)
  assert list(ia) == [1, 4] and list(ib) == [2, 5] and names == ["0→6", "1→7"]
  ia, ib, _ = figures.interpolation_pairs(np.zeros(5, int))  # one digit only: neighbours
  assert list(ia) == [0, 2] and list(ib) == [1, 3]


def test_disentanglement_against_beta_figure(tmp_path):
  rows = [{"member": f"b{b},s{s}", "beta": b, "seed": s, "status": "finished",
           "disentanglement/mig": 0.1 * b + 0.01 * s, "disentanglement/sap": 0.05}
          for b in (1.0, 4.0, 16.0) for s in (0, 1)]
  sweep_figures.plot_metrics_against(rows, tmp_path / "d.png")
  assert _is_png(tmp_path / "d.png")
  with pytest.raises(ValueError, match="no rows"):
    sweep_figures.plot_metrics_against([{"beta": 1.0}], tmp_path / "e.png")
