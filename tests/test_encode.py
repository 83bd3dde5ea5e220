"""Latent export (`vae_jax.tools.encode`), the probes of `vae_jax.analysis.probes`, and the denoising
evaluation (`vae_jax.tools.denoise`), on fake data."""

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests import forkserver
from tests.helpers import ROOT, fake_dataset, tiny_config
from vae_jax import latents, trainer, workdir
from vae_jax.analysis import probes
from vae_jax.tools import denoise, encode


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_export_latents_are_the_encoder_means_with_aligned_labels(tmp_path, kind):
  ds = fake_dataset(n_train=64, n_test=24)  # dynamic binarisation
  trainer.train_group([tiny_config(num_epochs=1, **{"model.name": kind})], [tmp_path], dataset=ds)
  written = encode.export_latents(tmp_path, "both", dataset=ds)
  assert sorted(p.name for p in written.values()) == [
      "labels_test.npy", "labels_train.npy", "latents_test.npy", "latents_train.npy"]
  _, model, _ = workdir.load_run(tmp_path, dataset=ds)
  z_test, y_test = np.load(tmp_path / "latents_test.npy"), np.load(tmp_path / "labels_test.npy")
  assert z_test.shape == (24, 4) and z_test.dtype == np.float32
  np.testing.assert_array_equal(y_test, ds.test_labels)
  means = np.asarray(model.encode(jnp.asarray(ds.test_images, jnp.float32) / 255.0)[0])
  np.testing.assert_allclose(z_test, means, rtol=1e-5, atol=1e-6)
  # Train split: binarised once with a fixed seed (dynamic runs), rows aligned with labels.
  z_train = np.load(tmp_path / "latents_train.npy")
  np.testing.assert_array_equal(np.load(tmp_path / "labels_train.npy"), ds.train_labels)
  images, _ = encode.split_images(ds, "train")
  assert set(np.unique(images)) <= {0, 255}
  np.testing.assert_allclose(z_train, latents.encode_means(model, images), rtol=1e-6)


@pytest.mark.slow
def test_commands_fail_with_one_line_and_exit_2(tmp_path):
  for module, extra in (("vae_jax.tools.encode", ["--split", "test"]), ("vae_jax.tools.denoise", [])):
    out = forkserver.run([sys.executable, "-m", module, "--workdir", str(tmp_path / "nope"),
                          *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, (module, out.stderr)
    assert out.stderr.strip().count("\n") == 0 and "does not exist" in out.stderr


def test_probes_on_separable_and_on_random_labels():
  rng = np.random.default_rng(0)
  centres = rng.normal(0, 10, (4, 3))
  y = rng.integers(0, 4, 2000)
  z = centres[y] + rng.normal(0, 0.5, (2000, 3))
  tr, te = slice(0, 1500), slice(1500, None)
  assert probes.logistic_accuracy(z[tr], y[tr], z[te], y[te]) == 1.0
  assert probes.knn_accuracy(z[tr], y[tr], z[te], y[te], k=5, chunk=128) == 1.0
  noise = rng.normal(size=(2000, 3))
  assert probes.knn_accuracy(noise[tr], y[tr], noise[te], y[te]) < 0.4  # chance is 0.25
  assert probes.logistic_accuracy(noise[tr], y[tr], noise[te], y[te]) < 0.4


def test_pca_finds_the_largest_variance_directions():
  rng = np.random.default_rng(1)
  basis = np.linalg.qr(rng.normal(size=(6, 6)))[0]
  x = (rng.normal(size=(5000, 6)) * np.array([5.0, 3.0, 1.0, 0.1, 0.1, 0.1])) @ basis.T + 7.0
  mean, comps, _ = probes.pca(x, 2)
  np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-10)
  np.testing.assert_allclose(np.abs(comps @ basis[:, :2]), np.eye(2), atol=0.02)
  proj = probes.pca_transform(x, mean, comps)
  assert proj.shape == (5000, 2)
  np.testing.assert_allclose(proj.std(0), [5.0, 3.0], rtol=0.05)


class _Identity(nnx.Module):
  """encode = identity, decode = logit: reconstructs its input (up to a clip)."""
  kind, likelihood, latent_dim = "ae", "gaussian", 64

  def encode(self, x):
    return x, None

  def decode(self, z):
    z = jnp.clip(z, 1e-6, 1 - 1e-6)
    return jnp.log(z) - jnp.log1p(-z)


@pytest.mark.slow
def test_denoise_metrics_compare_against_the_clean_images():
  import jax  # pylint: disable=g-import-not-at-top
  clean = fake_dataset(n_test=50, binarization="none").test_images
  m, images = denoise.denoising_metrics(_Identity(), clean, "salt_and_pepper", 0.2, jax.random.key(0))
  x = clean / 255.0
  want = np.mean(np.square(images["noisy"] - x).reshape(50, -1), 1)
  assert m["mse_input"] == pytest.approx(want.mean(), rel=1e-5) and m["mse_input"] > 0.01
  assert m["psnr_input"] == pytest.approx(np.mean(10 * np.log10(1 / want)), rel=1e-5)
  assert m["mse_output"] == pytest.approx(m["mse_input"], rel=1e-4)  # identity denoises nothing
  assert m["mse_clean_recon"] < 1e-8 and m["psnr_clean_recon"] > 60
  np.testing.assert_allclose(images["clean"], x)


@pytest.mark.slow
def test_denoise_workdir_writes_results_and_figure(tmp_path):
  ds = fake_dataset(n_train=512, n_test=64, binarization="none")
  config = tiny_config(num_epochs=10, learning_rate=1e-2, **{
      "model.name": "ae", "model.likelihood": "gaussian", "data.binarization": "none",
      "data.corruption": "mask", "data.corruption_level": 0.5})
  trainer.train_group([config], [tmp_path], dataset=ds)
  out = denoise.denoise_workdir(tmp_path, dataset=ds)
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["denoise/corruption"] == "mask" and saved["denoise/level"] == 0.5
  assert saved["denoise/psnr_output"] == out["denoise/psnr_output"]
  assert "test/rec" in saved  # the run's own results are kept
  assert out["denoise/mse_output"] < 0.5 * out["denoise/mse_input"]  # it does denoise
  assert (tmp_path / "denoising.png").stat().st_size > 0
  with pytest.raises(denoise.UserError, match="level"):
    denoise.denoise_workdir(tmp_path, "mask", 1.5, dataset=ds)


def test_knn_matches_a_brute_force_vote():
  """k-NN through argpartition equals voting over a full sort, tie rule included."""
  rng = np.random.default_rng(3)
  z_tr, z_te = rng.normal(size=(300, 3)), rng.normal(size=(90, 3))
  y_tr, y_te = rng.integers(0, 4, 300), rng.integers(0, 4, 90)
  s_tr, s_te = (z_tr - z_tr.mean(0)) / (z_tr.std(0) + 1e-8), (z_te - z_tr.mean(0)) / (z_tr.std(0) + 1e-8)
  d = ((s_te[:, None] - s_tr[None]) ** 2).sum(-1)
  for k in (1, 4, 5):
    expected = []
    for row in d:
      near = y_tr[np.argsort(row, kind="stable")[:k]]
      counts = np.bincount(near, minlength=4).astype(float)
      counts[near[0]] += 0.5  # an even split goes to the nearest neighbour's class
      expected.append(np.argmax(counts))
    want = float(np.mean(np.array(expected) == y_te))
    assert probes.knn_accuracy(z_tr, y_tr, z_te, y_te, k=k, chunk=32) == pytest.approx(want)


def test_figures_leave_the_users_matplotlib_backend_and_figures_alone(tmp_path):
  """A notebook's backend (inline) survives importing and using the figures: they draw on
  figures of their own (Agg canvases), never through pyplot. In a fresh process, since a
  backend is chosen once per process."""
  code = (
      "import sys, matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt;"
      " mine = plt.figure(); import numpy as np; from vae_jax.tools import denoise;"
      " x = np.zeros((3, 8, 8, 1), np.float32);"
      " denoise.save_figure(sys.argv[1], {'noisy': x, 'denoised': x, 'clean': x + 1});"
      " assert matplotlib.get_backend() == 'svg', matplotlib.get_backend();"
      " assert plt.get_fignums() == [mine.number], plt.get_fignums()")
  path = tmp_path / "denoising.png"
  out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert [p.name for p in tmp_path.iterdir()] == ["denoising.png"]  # no temporary file left
