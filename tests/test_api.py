"""The Python API (`vae_jax.load`, `vae_jax.train`, `Run`): each method against the library's
own functions, its refusals, training from Python equal to the launcher, and docs/api.ipynb
executed end to end. Also the small fixes that came with it: latent scatters of unlabelled
data, the AE-vs-VAE title, and `tools.encode` on unlabelled data."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import vae_jax
from tests.helpers import (ROOT, fake_dataset, final_params, launch, tiny_config,
                           write_fake_cache)
from vae_jax import latents, rng, workdir as workdir_lib
from vae_jax.errors import UserError

_NLL_K = 3  # the tiny VAE's eval_nll_k: results.json gets test/nll with it


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return write_fake_cache(tmp_path_factory.mktemp("data"))


def _config(cache_dir, **overrides):
  return tiny_config(**{"data.cache_dir": cache_dir, **overrides})


@pytest.fixture(scope="module")
def trained_vae(cache_dir, tmp_path_factory):
  """A tiny VAE trained and read back through the API (slow tests only)."""
  workdir = tmp_path_factory.mktemp("vae")
  results = vae_jax.train(_config(cache_dir, eval_nll_k=_NLL_K), workdir)
  run = vae_jax.load(workdir)
  assert results == run.results == workdir_lib.read_results(workdir)
  return run


def _untrained(kind: str) -> vae_jax.Run:
  """A `Run` of a freshly initialised model on fake data: the methods, without training."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from vae_jax import models  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{"model.name": kind})
  ds = fake_dataset()
  model = nnx.merge(*models.init_params(config, ds.image_shape))
  return vae_jax.Run(workdir=pathlib.Path("untrained"), config=config, model=model, dataset=ds,
                     results=None)


@pytest.fixture(scope="module")
def vae_run():
  return _untrained("vae")


@pytest.fixture(scope="module")
def ae_run():
  return _untrained("ae")


def _one_line_error(fn, *args, match: str, **kwargs) -> str:
  with pytest.raises(UserError, match=match) as e:
    fn(*args, **kwargs)
  assert "\n" not in str(e.value), str(e.value)
  return str(e.value)


# The package -----------------------------------------------------------------------------


def test_import_is_cheap_and_train_is_the_api_function():
  out = subprocess.run([sys.executable, "-c", "import sys, vae_jax; print('jax' in sys.modules)"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
  assert out.stdout.strip() == "False"
  from vae_jax import trainer  # the training loop's module, which the launcher imports
  # ... does not shadow the function: vae_jax.train stays api.train after the import.
  assert vae_jax.train is vae_jax.api.train and hasattr(trainer, "train_and_evaluate")
  assert vae_jax.load is vae_jax.api.load and vae_jax.Run is vae_jax.api.Run


# A loaded run ------------------------------------------------------------------------------


@pytest.mark.slow
def test_load_gives_the_runs_config_model_dataset_and_results(trained_vae):
  run = trained_vae
  assert run.kind == "vae" and run.latent_dim == 4 and run.image_shape == (8, 8, 1)
  assert run.config.model.latent_dim == 4 and run.results["epochs"] == 2
  assert run.dataset.name == "fake" and "VAE" in repr(run) and "fake 8x8x1" in repr(run)
  _one_line_error(vae_jax.load, run.workdir / "nope", match="does not exist")


def test_encode_is_the_librarys_encoder_for_every_image_form(vae_run):
  run, x = vae_run, vae_run.dataset.test_images
  z = run.encode(x)
  np.testing.assert_array_equal(z, latents.encode_means(run.model, x))
  assert z.shape == (len(x), 4) and z.dtype == np.float32
  np.testing.assert_array_equal(run.encode(x[..., 0]), z)  # (N, H, W): one channel added
  np.testing.assert_allclose(run.encode(x / 255.0), z, rtol=1e-6, atol=1e-6)  # floats in [0, 1]
  np.testing.assert_array_equal(run.encode(x.astype(np.int64)), z)  # integer grey levels
  mean, logvar = run.encode(x, posterior=True)
  want_mean, want_logvar = run.model.encode(jax.numpy.asarray(x, "float32") / 255.0)
  np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logvar, want_logvar, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(mean, z)


def test_decode_reconstruct_and_traverse(vae_run):
  run, x = vae_run, vae_run.dataset.test_images[:5]
  z = run.encode(x)
  images = run.decode(z)
  assert images.shape == (5, 8, 8, 1) and 0.0 <= images.min() and images.max() <= 1.0
  np.testing.assert_array_equal(images, latents.decode_means(run.model, z))
  logits = run.decode(z, mean=False)  # Bernoulli logits: the mean is their sigmoid
  np.testing.assert_allclose(jax.nn.sigmoid(logits), images, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(run.reconstruct(x), latents.reconstruct(run.model, x))
  np.testing.assert_allclose(run.reconstruct(x), images, rtol=1e-6, atol=1e-7)

  sweep = run.traverse(x[0], 2, limit=2.0, steps=5)
  assert sweep.shape == (5, 8, 8, 1)
  for i, value in enumerate(np.linspace(-2.0, 2.0, 5)):
    code = z[:1].copy()
    code[0, 2] = value  # unit 2 swept, the others at the image's posterior mean
    np.testing.assert_allclose(sweep[i], run.decode(code)[0], rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(run.traverse(x[:1], 2, limit=2.0, steps=5), sweep)
  assert not np.allclose(sweep[0], sweep[-1])


def test_sample_is_keyed_and_defaults_to_the_runs_samples_png(vae_run, ae_run):
  run = vae_run
  s = run.sample(6)
  assert s.shape == (6, 8, 8, 1) and 0.0 <= s.min() and s.max() <= 1.0
  np.testing.assert_array_equal(s, latents.prior_samples(run.model, rng.samples_key(0), 6))
  np.testing.assert_array_equal(run.sample(6, seed=0), s)
  np.testing.assert_array_equal(run.sample(6, key=rng.samples_key(0)), s)
  assert not np.allclose(run.sample(6, seed=1), s)
  # An AE: the Gaussian fitted to its training codes, as samples.png.
  train = ae_run.dataset.images("train", slice(0, 10000))
  np.testing.assert_array_equal(
      ae_run.sample(5, seed=3),
      latents.prior_samples(ae_run.model, rng.samples_key(3), 5, train))


@pytest.mark.slow
def test_log_likelihood_reproduces_the_runs_test_nll(trained_vae):
  run, x = trained_vae, trained_vae.dataset.test_images
  log_px = run.log_likelihood(x, k=_NLL_K)  # the run's seed: test/nll's key
  assert -log_px.mean() == pytest.approx(run.results["test/nll"], rel=1e-6)


def test_log_likelihood_rises_with_k_whatever_the_chunks(vae_run):
  run, x = vae_run, vae_run.dataset.test_images
  log_px = run.log_likelihood(x, k=_NLL_K)
  assert log_px.shape == (len(x),) and log_px.dtype == np.float64
  chunks = dict(image_chunk=7, sample_chunk=1)  # one compiled program for every k below
  np.testing.assert_allclose(run.log_likelihood(x, k=_NLL_K, **chunks), log_px,
                             rtol=1e-6)  # the noise is keyed per (image, sample)
  # The IWAE bound grows with k on average.
  assert run.log_likelihood(x, k=1, **chunks).mean() < run.log_likelihood(x, k=50, **chunks).mean()


def test_log_likelihood_at_k1_is_the_one_sample_elbo(vae_run):
  """Written out from the densities with the same noise, apart from the library's objectives."""
  run, x = vae_run, vae_run.dataset.test_images[:9]
  key = rng.nll_key(5)
  eps = np.asarray(rng.iwae_noise(key, np.arange(len(x)), np.arange(1), run.latent_dim))[0]
  mean, logvar = run.encode(x, posterior=True)
  z = mean + np.exp(0.5 * logvar) * eps
  logits = run.decode(z, mean=False).reshape(len(x), -1).astype(np.float64)
  target = (x.reshape(len(x), -1) / 255.0).astype(np.float64)  # binary test images
  log_lik = np.sum(target * logits - np.logaddexp(0.0, logits), axis=1)
  log_2pi = np.log(2 * np.pi)
  log_prior = -0.5 * np.sum(z ** 2 + log_2pi, axis=1)
  log_q = -0.5 * np.sum(eps ** 2 + logvar + log_2pi, axis=1)
  np.testing.assert_allclose(run.log_likelihood(x, k=1, key=key),
                             log_lik + log_prior - log_q, rtol=1e-4)
  np.testing.assert_array_equal(run.log_likelihood(x, k=1, seed=5),
                                run.log_likelihood(x, k=1, key=key))


@pytest.mark.slow
def test_disentanglement_on_the_runs_factors_or_on_given_ones(trained_vae):
  run = trained_vae
  on_dataset = run.disentanglement(sample_scale=0.01)
  for name in ("mig", "dci_informativeness", "sap", "explicitness", "mig_chen"):
    assert np.isfinite(on_dataset[f"disentanglement/{name}"]), name
  # One factor (the label): the scores that compare factors are not computed, with a reason.
  assert sorted(on_dataset["not_computed"]) == [
      f"disentanglement/{k}" for k in ("beta_vae", "dci_disentanglement", "factor_vae",
                                       "modularity")]
  ds = run.dataset
  given = run.disentanglement(ds.train_labels, images=ds.train_images, factor_names=["label"],
                              sample_scale=0.01)
  numbers = lambda d: {k: v for k, v in d.items()
                       if not k.endswith("seconds") and k != "not_computed"}
  assert numbers(given) == numbers(on_dataset)
  unlabelled = dataclasses.replace(run, dataset=dataclasses.replace(ds, factor_names=()))
  _one_line_error(unlabelled.disentanglement, match="no ground-truth factors")
  _one_line_error(run.disentanglement, ds.train_labels, match="pass both images= and factors=")
  _one_line_error(run.disentanglement, ds.train_labels[:3], images=ds.train_images,
                  match=r"factors of shape \(3,\)")


def test_refusals_are_one_line(vae_run, ae_run):
  run, x = vae_run, vae_run.dataset.test_images[:4]
  message = _one_line_error(run.encode, np.zeros((4, 28, 28), np.uint8), match="expected")
  assert "(N, 8, 8, 1)" in message
  _one_line_error(run.encode, x / 1.0, match=r"\[0, 1\]")  # 0..255 as floats
  _one_line_error(run.encode, x.astype(np.int64) * 2, match="0..255")
  _one_line_error(run.decode, np.zeros((2, 3)), match=r"expected \(N, 4\)")
  _one_line_error(run.traverse, x[0], 4, match="unit=4")
  _one_line_error(run.traverse, x[:2], 0, match="one image of shape")
  _one_line_error(run.sample, 0, match="n=0")
  _one_line_error(run.sample, 2, key=rng.samples_key(0), seed=0, match="not both")
  _one_line_error(run.log_likelihood, x, k=0, match="k=0")
  _one_line_error(ae_run.encode, x, posterior=True, match="AE")
  _one_line_error(ae_run.log_likelihood, x, match="defines no likelihood")
  assert ae_run.encode(x).shape == (4, 4) and ae_run.kind == "ae"


# Training from Python ----------------------------------------------------------------------

_CONFIG_FILE = '''
from tests.helpers import tiny_config

def get_config():
  return tiny_config(**{{"data.cache_dir": {cache_dir!r}}})

def get_sweep():
  return [{{"beta": b}} for b in (0.5, 2.0)]
'''


def test_train_refuses_bad_input_in_one_line(tmp_path, cache_dir):
  _one_line_error(vae_jax.train, _config(cache_dir, **{"model.latent_dim": 0}), tmp_path / "a",
                  match="latent_dim")
  assert not (tmp_path / "a").exists()  # validated before anything is written
  _one_line_error(vae_jax.train, tmp_path / "missing.py", tmp_path / "b", match="no such file")
  _one_line_error(vae_jax.train, _config(cache_dir), tmp_path / "c", overrides={"nope": 1},
                  match="'nope' is not a config field")
  _one_line_error(vae_jax.train, _config(cache_dir), tmp_path / "d", sweep=True,
                  match="needs a config file")


@pytest.mark.slow
def test_train_from_python_equals_the_launcher(tmp_path, cache_dir):
  config_file = tmp_path / "tiny.py"
  config_file.write_text(_CONFIG_FILE.format(cache_dir=cache_dir))
  out = launch(["--config", str(config_file), "--workdir", str(tmp_path / "launched"),
                "--nosweep", "--config.learning_rate=0.002"])
  assert out.returncode == 0, out.stderr
  from_file = vae_jax.train(config_file, tmp_path / "from_file",
                            overrides={"learning_rate": 0.002})
  from_dict = vae_jax.train(_config(cache_dir, learning_rate=0.002), tmp_path / "from_dict")
  launched = workdir_lib.read_results(tmp_path / "launched")
  print("test/neg_elbo: launcher", launched["test/neg_elbo"], "train(file)",
        from_file["test/neg_elbo"], "train(ConfigDict)", from_dict["test/neg_elbo"])
  for key in ("test/neg_elbo", "test/rec", "test/kl", "test/loss", "steps"):
    assert from_file[key] == launched[key] == from_dict[key], key
  saved = lambda name: json.loads((tmp_path / name / "config.json").read_text())["config"]
  assert saved("from_file") == saved("launched") == saved("from_dict")
  launched_run = vae_jax.load(tmp_path / "launched")
  config, ds = launched_run.config, launched_run.dataset
  for a, b in zip(final_params(config, tmp_path / "launched", ds),
                  final_params(config, tmp_path / "from_file", ds)):
    np.testing.assert_array_equal(a, b)
  # A finished workdir is not trained again: the same results come back.
  assert vae_jax.train(config_file, tmp_path / "from_file",
                       overrides={"learning_rate": 0.002}) == from_file


@pytest.mark.slow
def test_train_a_sweep_from_python(tmp_path, cache_dir):
  config_file = tmp_path / "tiny.py"
  config_file.write_text(_CONFIG_FILE.format(cache_dir=cache_dir))
  rows = vae_jax.train(config_file, tmp_path / "sweep", sweep=True)
  assert [r["member"] for r in rows] == ["beta=0.5", "beta=2"]
  for row in rows:
    assert row["test/neg_elbo"] == workdir_lib.read_results(
        tmp_path / "sweep" / row["member"])["test/neg_elbo"]
  # Overriding the swept key pins it: one run, as on the command line. It trains alone, so it
  # equals the vectorised member to rounding (test_sweeps' tolerance), not bit for bit.
  pinned = vae_jax.train(config_file, tmp_path / "pinned", sweep=True, overrides={"beta": 2.0})
  np.testing.assert_allclose(pinned["test/neg_elbo"], rows[1]["test/neg_elbo"], rtol=1e-5)
  assert abs(rows[0]["test/neg_elbo"] - rows[1]["test/neg_elbo"]) > 1e-3  # beta tells them apart


# The notebook ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_api_notebook_runs(tmp_path, monkeypatch):
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's tempfile.mkdtemp(): the run
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  notebook = nbformat.read(ROOT / "docs" / "api.ipynb", as_version=4)
  assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code")
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(ROOT / "docs")}}).execute()
  outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure was drawn


# The small fixes beside the API ------------------------------------------------------------


def _captured_figures(monkeypatch):
  from vae_jax.figures import latents as latent_figures  # pylint: disable=g-import-not-at-top
  figs = []
  monkeypatch.setattr(latent_figures, "save_figure", lambda fig, path, **_: figs.append(fig) or
                      str(path))
  return latent_figures, figs


def test_latent_scatter_of_unlabelled_data_is_uncoloured(monkeypatch, tmp_path, vae_run):
  latent_figures, figs = _captured_figures(monkeypatch)
  ds = vae_run.dataset
  unlabelled = dataclasses.replace(ds, factor_names=(), factor_sizes=(),
                                   test_labels=np.zeros_like(ds.test_labels))
  assert latent_figures.scatter_label_name(unlabelled) is None
  assert latent_figures.scatter_label_name(ds) == "label"
  assert latent_figures.scatter_label_name(dataclasses.replace(ds, name="mnist")) == "digit"
  # Zero labels under the name "digit" (what an unlabelled run passes) draw no colours either.
  for labels, name in ((None, None), (unlabelled.test_labels, "digit")):
    latent_figures.save_latent_figures(tmp_path, vae_run.model, ds.test_images, labels, name)
    ax = figs.pop().axes[0]
    assert "digit" not in ax.get_title() and "coloured" not in ax.get_title()
    assert ax.get_legend() is None and len(ax.collections) == 1
  latent_figures.save_latent_figures(tmp_path, vae_run.model, ds.test_images, ds.test_labels,
                                     "label")
  ax = figs.pop().axes[0]
  assert ax.get_title().endswith("coloured by label")
  assert ax.get_legend().get_title().get_text() == "label"


def test_ae_vs_vae_title_names_the_dataset(monkeypatch):
  latent_figures, figs = _captured_figures(monkeypatch)
  from vae_jax import models  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  tiny = lambda kind: nnx.merge(*models.init_params(
      tiny_config(**{"model.name": kind, "model.latent_dim": 2}), (8, 8, 1)))
  images = np.zeros((6, 8, 8, 1), np.uint8)
  latent_figures.save_ae_vs_vae("x.png", tiny("ae"), tiny("vae"), images, np.arange(6), n=3,
                                dataset_name="fashion_mnist", label_name="label")
  assert figs.pop().get_suptitle().endswith("(fashion_mnist test set)")
  latent_figures.save_ae_vs_vae("x.png", tiny("ae"), tiny("vae"), images, None, n=3)
  assert "MNIST" not in figs.pop().get_suptitle()


def test_encode_tool_writes_no_labels_for_unlabelled_data(tmp_path, vae_run):
  from vae_jax.tools import encode  # pylint: disable=g-import-not-at-top
  ds = vae_run.dataset
  unlabelled = dataclasses.replace(ds, factor_names=(), factor_sizes=())
  written = encode.export_latents(tmp_path, "test", dataset=unlabelled, model=vae_run.model)
  assert sorted(written) == ["latents_test"] and not (tmp_path / "labels_test.npy").exists()
  written = encode.export_latents(tmp_path, "test", dataset=ds, model=vae_run.model)
  assert sorted(written) == ["labels_test", "latents_test"]
  np.testing.assert_array_equal(np.load(written["labels_test"]), ds.test_labels)
