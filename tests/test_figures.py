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
  return models.FAMILIES[kind](architecture="mlp", image_shape=(6, 6, 1),
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


def _drawn(tmp_path, rows, keys):
  return sorted(p.split("/")[-1] for p in sweep_figures.sweep_figures(tmp_path, rows, keys))


def test_sweep_figures_are_chosen_from_one_table(tmp_path):
  assert [f.name for f in sweep_figures.SWEEP_FIGURES] == [
      "rate_distortion", "disentanglement", "latent_size", "ae_vs_vae"]
  beta = [{**r, "member": r["workdir"], "status": "finished",
           "disentanglement/mig_chen": 0.1 * r["beta"]} for r in _rows()]
  assert _drawn(tmp_path, beta, ["beta", "seed"]) == ["disentanglement.png",
                                                      "rate_distortion.png"]
  # Without any registered metric in the rows, no disentanglement figure; with two swept keys
  # neither (there is no one value to put on its x axis).
  plain = [{k: v for k, v in r.items() if "disentanglement" not in k} for r in beta]
  assert _drawn(tmp_path, plain, ["beta"]) == ["rate_distortion.png"]
  assert _drawn(tmp_path, beta, ["beta", "learning_rate"]) == ["rate_distortion.png"]
  sizes = [{"member": f"{k}{d}", "status": "finished", "model.name": k, "model.latent_dim": d,
            "test/rec": 100.0 / d, "test/neg_elbo": 100.0 + d} for k in ("ae", "vae")
           for d in (2, 5)]
  assert _drawn(tmp_path, sizes, ["model.name", "model.latent_dim"]) == ["latent_size.png"]
  assert _drawn(tmp_path, sizes, ["model.latent_dim", "objective"]) == []
  assert _drawn(tmp_path, [{**r, "status": "failed"} for r in beta], ["beta"]) == []


def test_ae_vs_vae_sweep_figure_names_the_dataset(tmp_path, monkeypatch):
  from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from vae_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from vae_jax.figures import latents as latent_figures  # pylint: disable=g-import-not-at-top
  images, labels = _data()
  ds = data_lib.Dataset("fashion_mnist", "dynamic", images, labels, images, labels,
                        ("label",), (10,))
  runs = {"ae": _tiny("ae"), "vae": _tiny("vae")}
  monkeypatch.setattr(workdir_lib, "load_run",
                      lambda path, dataset=None: (None, runs[path.name], ds))
  titles = []
  save = latent_figures.save_figure

  def save_and_read_title(fig, path, **kw):
    titles.append(fig._suptitle.get_text())  # pylint: disable=protected-access
    return save(fig, path, **kw)

  monkeypatch.setattr(latent_figures, "save_figure", save_and_read_title)
  rows = [{"member": k, "model.name": k, "status": "finished"} for k in ("ae", "vae")]
  assert _drawn(tmp_path, rows, ["model.name"]) == ["ae_vs_vae.png"]
  assert titles == ["AE vs VAE with a 2-D latent space (fashion_mnist test set)"]
  runs["vae"] = _tiny("vae", latent_dim=3)  # not 2-D: no figure
  assert _drawn(tmp_path, rows, ["model.name"]) == []


# --------------------------------------------------------------------------------------------
# Latent traversals: rows labelled with the factor each unit carries, and the animated GIF.


def test_normalised_mi_names_the_factor_a_unit_copies():
  from vae_jax.analysis import factors as factors_lib
  from vae_jax.figures import traversals
  rng = np.random.default_rng(0)
  f = np.stack([rng.integers(0, 3, 5000), rng.integers(0, 8, 5000)], 1)
  codes = np.stack([0.3 * f[:, 1] - 1.0,  # unit 0 copies factor 1 (scaled, shifted)
                    rng.normal(size=5000),  # unit 1 carries nothing
                    -2.0 * f[:, 0] + 0.01 * rng.normal(size=5000)], 1)  # unit 2: factor 0
  mi = factors_lib.normalised_unit_factor_mi(codes, f)
  assert mi.shape == (3, 2) and (mi >= 0).all() and (mi <= 1 + 1e-9).all()
  assert mi[0, 1] == pytest.approx(1.0) and mi[0, 0] < 0.01 and mi[1].max() < 0.02
  labels = traversals.factor_labels(mi, ("shape", "position_x"))
  assert labels[0] == "position x 1.00 H"
  assert labels[1] == traversals.NO_FACTOR
  assert labels[2].startswith("shape ")


def test_factor_labels_from_an_mi_matrix():
  from vae_jax.figures import traversals
  mi = np.array([[0.10, 0.71, 0.0], [0.02, 0.04, 0.049], [0.30, 0.0, 0.05]])
  assert traversals.factor_labels(mi, ("a", "label_x_position", "c")) == [
      "x position 0.71 H", traversals.NO_FACTOR, "a 0.30 H"]
  kl = np.array([2.5, 0.3, 0.001])
  # Data without factors: the labels as before, no factor named.
  assert traversals.row_labels([0, 2], kl) == ["z0  KL 2.50", "z2  KL 0.00"]
  per_unit = traversals.factor_labels(mi, ("a", "b", "c"))
  assert traversals.row_labels([0, 1, 2], kl, "KL", per_unit) == [
      "z0 · b 0.71 H\nKL 2.50", "z1 · no factor\nKL 0.30", "z2 · unused\nKL 0.00"]
  assert traversals.bounce(5) == [0, 1, 2, 3, 4, 3, 2, 1] and traversals.bounce(1) == [0]


def _factor_dataset(sizes=(3, 4), repeats=4):
  """A two-factor dataset (every combination `repeats` times): factor 0 is a bar's row, factor
  1 its column."""
  import itertools
  from vae_jax import data as data_lib
  f = np.array(list(itertools.product(*[range(s) for s in sizes])) * repeats, np.int32)
  images = np.zeros((len(f), 8, 8, 1), np.uint8)
  for i, (a, b) in enumerate(f):
    images[i, 2 * a:2 * a + 2, 2 * b:2 * b + 2] = 255
  return data_lib.Dataset("grid", "static", images, f, images[:12], f[:12], ("row", "column"),
                          sizes)


def test_unit_factor_information_of_a_model():
  from vae_jax.analysis import factors as factors_lib
  ds = _factor_dataset()
  model = models.VAE(architecture="mlp", image_shape=(8, 8, 1), latent_dim=3,
                     hidden_sizes=(8,), activation="tanh", likelihood="bernoulli",
                     scale=1.0, learn_scale=False, rngs=nnx.Rngs(0))
  mi, names = factors_lib.unit_factor_information(model, ds, num_points=30, seed=1)
  assert mi.shape == (3, 2) and names == ("row", "column")
  assert np.isfinite(mi).all() and (mi >= 0).all() and (mi <= 1 + 1e-9).all()
  again, _ = factors_lib.unit_factor_information(model, ds, num_points=30, seed=1)
  np.testing.assert_array_equal(mi, again)  # a fixed subset


def test_traversals_write_an_animated_gif(tmp_path):
  from PIL import Image
  from vae_jax.figures import traversals
  model, (images, _) = _tiny("vae", latent_dim=3), _data()
  info = (np.array([[0.9, 0.0], [0.01, 0.02], [0.0, 0.4]]), ("shape", "position_x"))
  png = traversals.save_traversals(tmp_path / "traversals.png", model, images[0],
                                   np.array([1.0, 0.5, 0.2]), steps=5, unit_factor_info=info)
  assert png.endswith("traversals.png") and _is_png(tmp_path / "traversals.png")
  with Image.open(tmp_path / "traversals.gif") as gif:
    assert gif.format == "GIF" and gif.is_animated
    assert gif.n_frames == 8  # 5 steps forth, 3 back
    assert gif.info.get("loop") == 0  # loops forever
    assert gif.size[0] <= 3 * 200 and gif.size[1] <= 300
  traversals.save_traversals(tmp_path / "no_gif.png", model, images[0], np.ones(3), steps=5,
                             gif=False)
  assert not (tmp_path / "no_gif.gif").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind,layers,factors", [("vae", 1, False), ("vae", 1, True),
                                                 ("vae", 2, False), ("ae", 1, True)])
def test_run_figures_label_traversals_with_factors_only(tmp_path, monkeypatch, kind, layers,
                                                        factors):
  from tests import helpers
  from vae_jax import finish
  from vae_jax.analysis import factors as factors_lib
  from vae_jax.figures import traversals
  ds = _factor_dataset() if factors else helpers.fake_dataset(shape=(8, 8, 1))
  config = helpers.tiny_config(**{"model.name": kind, "model.stochastic_layers": layers,
                                  "model.top_latent_dim": 2, "model.top_hidden_sizes": (8,),
                                  "model.hidden_sizes": (8,), "model.latent_dim": 3})
  model = models.from_config(config.model, ds.image_shape, nnx.Rngs(0))
  calls, labels = [], []
  real_info, real_grid = factors_lib.unit_factor_information, traversals.save_grid
  monkeypatch.setattr(factors_lib, "unit_factor_information",
                      lambda *a, **k: calls.append(1) or real_info(*a, **k))
  monkeypatch.setattr(traversals, "save_grid",
                      lambda *a, **k: labels.extend(a[4]) or real_grid(*a, **k))
  paths = finish.run_figures(config, tmp_path, model, ds)
  if kind == "ae":  # no prior to sweep: no traversals, as before
    assert "traversals" not in paths and not (tmp_path / "traversals.gif").exists() and not calls
    return
  assert _is_png(tmp_path / "traversals.png") and (tmp_path / "traversals.gif").stat().st_size
  assert len(labels) == 3 and len(calls) == int(factors)
  assert all(("·" in t) == factors for t in labels), labels
  score = "KL" if layers == 1 else "var"
  assert all(f"{score} " in t.split("\n")[-1] for t in labels), labels
