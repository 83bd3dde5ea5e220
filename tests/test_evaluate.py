"""test/nll at the end of training, `load_run` and the `python -m vae_jax.tools.nll` command."""

import json
import sys

import numpy as np
import pytest
from flax import nnx

from tests import forkserver
from tests.helpers import ROOT, fake_dataset, tiny_config
from vae_jax import finish, latents, models, trainer, validate, workdir
from vae_jax.tools import nll
from vae_jax.errors import UserError


@pytest.mark.slow
def test_train_end_nll_matches_the_command_on_the_restored_model(tmp_path):
  ds = fake_dataset()
  res = trainer.train_group([tiny_config(eval_nll_k=16)], [tmp_path], dataset=ds)[0]
  assert res["test/nll_k"] == 16
  assert res["test/nll"] <= res["test/neg_elbo"] + 0.5  # IWAE bound is tighter (up to MC noise)
  assert len(res["test/kl_per_dim"]) == 4 and 0 <= res["test/active_units"] <= 4
  assert json.loads((tmp_path / "results.json").read_text())["test/nll"] == res["test/nll"]

  config, model, _ = workdir.load_run(tmp_path, dataset=ds)
  assert config.model.hidden_sizes == (32,) and config.eval_nll_k == 16
  fresh = nnx.merge(*models.init_params(config, ds.image_shape))
  assert not np.allclose(latents.encode_means(model, ds.test_images),
                         latents.encode_means(fresh, ds.test_images))
  # The restored model is the trained one: same key, same estimate.
  again = nll.nll_of_workdir(tmp_path, 16, sample_chunk=16, dataset=ds)
  assert again["test/nll"] == pytest.approx(res["test/nll"], rel=1e-6)
  more = nll.nll_of_workdir(tmp_path, 64, sample_chunk=16, dataset=ds)
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["test/nll_k"] == 64 and saved["test/nll"] == more["test/nll"]
  assert saved["test/neg_elbo"] == res["test/neg_elbo"]  # other entries kept


def _fake_workdir(path, config, finished=True):
  path.mkdir(parents=True, exist_ok=True)
  workdir.write_json(path / "config.json", workdir.run_info(config))
  if finished:
    workdir.write_json(path / "results.json", {"epochs": config.num_epochs})
  return path


def test_ae_gets_no_nll(tmp_path):
  config = tiny_config(eval_nll_k=8, **{"model.name": "ae"})
  # Never estimated for an AE (finish_member records why: tests/test_undefined_quantities.py).
  assert finish._test_nll(config, tmp_path, None, None) == {}  # pylint: disable=protected-access
  with pytest.raises(UserError, match="AE"):
    nll.nll_of_workdir(_fake_workdir(tmp_path / "ae", config), 8)


def test_unfinished_or_missing_runs_are_refused(tmp_path):
  unfinished = _fake_workdir(tmp_path / "u", tiny_config(), finished=False)
  with pytest.raises(UserError, match="unfinished"):
    workdir.load_run(unfinished)
  with pytest.raises(UserError, match="does not exist"):
    workdir.load_run(tmp_path / "nope")
  with pytest.raises(UserError, match="holds no run"):
    workdir.load_run(tmp_path)
  with pytest.raises(UserError, match="k=0"):
    nll.nll_of_workdir(unfinished, 0)
  with pytest.raises(UserError, match="unfinished run .* --epoch N"):
    nll.nll_of_workdir(unfinished, 4)
  with pytest.raises(UserError, match="no checkpoints"):
    nll.nll_of_workdir(unfinished, 4, epoch=3)


@pytest.mark.slow
def test_a_checkpoint_of_an_unfinished_run_is_estimated_and_nothing_written(tmp_path):
  """`--epoch N` follows a run that is still training: the same estimate as once it is done,
  and results.json (the launcher's, which marks the run finished) is left alone."""
  ds = fake_dataset()
  res = trainer.train_group([tiny_config(num_epochs=2, eval_nll_k=16)], [tmp_path], dataset=ds)[0]
  (tmp_path / "results.json").unlink()  # as while the run trains
  got = nll.nll_of_workdir(tmp_path, 16, epoch=2, dataset=ds)
  assert got["test/nll"] == pytest.approx(res["test/nll"], rel=1e-6)
  assert not (tmp_path / "results.json").exists()
  with pytest.raises(UserError, match=r"--epoch N .*kept: \[1, 2\]"):
    nll.nll_of_workdir(tmp_path, 16, dataset=ds)
  with pytest.raises(UserError, match="no checkpoint of epoch 7"):
    nll.nll_of_workdir(tmp_path, 16, epoch=7, dataset=ds)


def test_eval_nll_k_is_validated():
  with pytest.raises(UserError, match="eval_nll_k"):
    validate.validate(tiny_config(eval_nll_k=-1))
  validate.validate(tiny_config(eval_nll_k=0))


@pytest.mark.slow
def test_command_bad_input_is_one_line_and_exit_2(tmp_path):
  out = forkserver.run([sys.executable, "-m", "vae_jax.tools.nll", "--workdir", str(tmp_path / "x"),
                        "--k", "10"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2
  assert out.stderr.strip().count("\n") == 0 and "does not exist" in out.stderr
