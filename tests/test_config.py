"""The config's layout: each objective's own fields in one sub-dict named for it, declared with
their defaults by the objective's module; the default config inside the package; the one
loader of config files; and runs saved with the old flat names, which must read, compare and
resume under the new ones."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from vae_jax import config as config_lib, objectives, sweeps, trainer, validate, workdir
from vae_jax.errors import UserError
from tests.helpers import (ROOT, TINY_CONFIG_FILE, fake_dataset, final_params, launch,
                           tiny_config, write_fake_cache)

# The objective fields of configs/default.py before they moved into per-objective sub-dicts:
# the flat layout of every config.json saved until then, with each field's new name and
# default. Written out here rather than read from `workdir.RENAMED_FIELDS`, so a wrong entry
# there fails these tests.
OLD_FLAT = {
    "annealed_gamma": ("annealed_vae.gamma", 1000.0),
    "annealed_capacity_max": ("annealed_vae.capacity_max", 25.0),
    "annealed_capacity_steps": ("annealed_vae.capacity_steps", 100_000),
    "tcvae_alpha": ("beta_tcvae.alpha", 1.0),
    "tcvae_beta": ("beta_tcvae.beta", 6.0),
    "tcvae_gamma": ("beta_tcvae.gamma", 1.0),
    "tcvae_estimator": ("beta_tcvae.estimator", "mss"),
    "dip_lambda_od": ("dip_vae.lambda_od", 10.0),
    "dip_lambda_d": ("dip_vae.lambda_d", 100.0),
    "factor_gamma": ("factor_vae.gamma", 10.0),
    "factor_discriminator_learning_rate": ("factor_vae.discriminator_learning_rate", 1e-4),
    "factor_discriminator_sizes": ("factor_vae.discriminator_sizes", (1000,) * 6),
}
SECTIONS = ("annealed_vae", "beta_tcvae", "dip_vae", "factor_vae")
# Values other than the defaults, of the same types, for the read-back checks.
OTHER = {"annealed_gamma": 7.0, "annealed_capacity_max": 3.5, "annealed_capacity_steps": 12,
         "tcvae_alpha": 0.5, "tcvae_beta": 4.0, "tcvae_gamma": 2.0, "tcvae_estimator": "mws",
         "dip_lambda_od": 2.0, "dip_lambda_d": 20.0, "factor_gamma": 30.0,
         "factor_discriminator_learning_rate": 3e-4, "factor_discriminator_sizes": [16, 8]}


def _get(d: dict, dotted: str):
  for part in dotted.split("."):
    d = d[part]
  return d


def _to_flat_layout(saved: dict) -> dict:
  """A saved config (JSON data, today's layout) rewritten as a run saved before the move held
  it: the objective fields at the top level under their old names, no per-objective
  sub-dicts."""
  old = {k: v for k, v in json.loads(json.dumps(saved)).items() if k not in SECTIONS}
  for name, (new, _) in OLD_FLAT.items():
    old[name] = _get(saved, new)
  return old


def _with_old_values(config, values: dict):
  """`config` (a ConfigDict) with the fields of `values` (old names) set under their new names."""
  c = config.copy_and_resolve_references()
  c.update_from_flattened_dict({OLD_FLAT[k][0]: tuple(v) if isinstance(v, list) else v
                                for k, v in values.items()})
  return c


def _write_info(folder: pathlib.Path, saved: dict) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps({"config": saved}))


# --- the layout ----------------------------------------------------------------------------


def test_each_objective_field_moved_with_its_default():
  c = config_lib.get_config()
  for old, (new, value) in OLD_FLAT.items():
    assert c[new] == value, (old, new)
    assert old not in c
  # Every field the library reads per member or per program names a field of the config, and
  # each objective's own fields are its module's declaration.
  for name, objective in objectives.OBJECTIVES.items():
    for field in (*objective.hparams, *objective.static,
                  *objective.module_learning_rates.values()):
      assert field in workdir.flatten(c.to_dict()), (name, field)
  assert set(objectives.CONFIG_SECTIONS) == set(SECTIONS)
  for section, fields in objectives.CONFIG_SECTIONS.items():
    assert c[section].to_dict() == fields().to_dict()
  # configs/default.py is the package's config, not a second copy of it.
  assert default.get_config().to_dict() == c.to_dict()
  assert workdir.RENAMED_FIELDS == {k: new for k, (new, _) in OLD_FLAT.items()}


def test_the_shared_elbo_knobs_stay_at_the_top_level():
  c = config_lib.get_config()
  for knob in ("beta", "kl_warmup_steps", "free_bits", "num_importance_samples"):
    assert knob in c and not isinstance(c[knob], type(c))
  assert objectives.member_hparams(tiny_config(objective="dip_vae_i")) == (
      "learning_rate", "beta", "kl_warmup_steps", "free_bits", "dip_vae.lambda_od",
      "dip_vae.lambda_d")
  assert objectives.static_options(tiny_config(objective="beta_tcvae",
                                               **{"beta_tcvae.estimator": "mws"})) == {
      "beta_tcvae.estimator": "mws"}


def test_an_old_flat_name_set_in_a_config_or_a_sweep_names_its_new_name():
  c = tiny_config()
  c.tcvae_beta = 4.0  # what an old config file does to the unlocked default config
  with pytest.raises(UserError, match=r"config\.tcvae_beta=4\.0 .* now config\.beta_tcvae\.beta"):
    validate.validate(c)
  with pytest.raises(UserError, match="'factor_gamma' is not a config field; it is now "
                     "'factor_vae.gamma'"):
    sweeps.apply_overrides(tiny_config(), {"factor_gamma": 20.0})
  # The new name in a sweep: an int for a float field becomes a float, as for any field.
  swept = sweeps.apply_overrides(tiny_config(), {"beta_tcvae.beta": 4, "dip_vae.lambda_od": 2})
  assert swept.beta_tcvae.beta == 4.0 and isinstance(swept.beta_tcvae.beta, float)
  assert swept.dip_vae.lambda_od == 2.0 and swept.beta == 1.0


def test_sweeps_over_objective_fields_use_the_dotted_names():
  chen = sweeps.load_module(str(ROOT / "configs" / "dsprites_chen.py"))
  members = sweeps.expand(chen.get_config("cpu"), sweeps.sweep_of(chen, "cpu"))
  by_name = {n: c for n, _, c in members}
  assert by_name["tcvae_mws"].beta_tcvae.estimator == "mws"
  assert by_name["tcvae_mss"].beta_tcvae.beta == 6.0 and by_name["beta_vae"].beta == 6.0
  # A member's objective field pinned from the command line, as --config.beta_tcvae.beta=4.
  pinned = sweeps.pinned_overrides(
      sweeps.apply_overrides(chen.get_config("cpu"), {"beta_tcvae.beta": 4.0}),
      sweeps.sweep_of(chen, "cpu"), {"beta_tcvae.beta": 4.0})
  assert pinned == {"beta_tcvae.beta": 4.0}
  spec = sweeps.wandb_sweep_spec([{"beta_tcvae.beta": b} for b in (1.0, 4.0)],
                                 config_path="c.py", workdir="w", sweep_name="s")
  assert spec["parameters"] == {"config.beta_tcvae.beta": {"values": [1.0, 4.0]}}


# --- old runs ------------------------------------------------------------------------------


def test_an_old_flat_config_json_reads_back_in_the_new_layout(tmp_path):
  new = _with_old_values(tiny_config(), OTHER)
  old = _to_flat_layout(workdir.resolved_config(new))
  assert not set(SECTIONS) & set(old) and old["tcvae_estimator"] == "mws"
  _write_info(tmp_path, old)
  back = workdir.read_config(tmp_path)
  for name, (field, _) in OLD_FLAT.items():
    assert name not in back
    want = OTHER[name]
    assert back[field] == (tuple(want) if isinstance(want, list) else want), field
  assert back.factor_vae.discriminator_sizes == (16, 8)  # a tuple, as the config files set it
  assert json.loads(back.to_json_best_effort()) == json.loads(
      json.dumps(workdir.resolved_config(new)))
  # `migrate` returns a copy, and leaves a config of today's layout as it is.
  assert workdir.migrate(old)["beta_tcvae"]["beta"] == 4.0
  assert "tcvae_beta" in old and "beta_tcvae" not in old
  assert workdir.migrate(workdir.resolved_config(new)) == workdir.resolved_config(new)


def test_an_old_flat_config_json_compares_equal_to_its_new_config():
  new = _with_old_values(tiny_config(), OTHER)
  old = _to_flat_layout(workdir.resolved_config(new))
  assert workdir.config_differences(old, workdir.resolved_config(new)) == []
  # A changed value is named by its new name, in either layout.
  changed = workdir.resolved_config(_with_old_values(new, {"tcvae_beta": 8.0,
                                                           "factor_discriminator_sizes": [16]}))
  assert workdir.config_differences(old, changed) == ["beta_tcvae.beta",
                                                       "factor_vae.discriminator_sizes"]
  # A run saved before any of these fields existed reads them at their defaults.
  older = {k: v for k, v in _to_flat_layout(workdir.resolved_config(tiny_config())).items()
           if k not in OLD_FLAT}
  assert workdir.config_differences(older, workdir.resolved_config(tiny_config())) == []


# The two-layer VAE's spelling before the family table, and today's (vae_jax/config.py). Written
# out here rather than read from `workdir.RENAMED_VALUES`, so a wrong entry there fails these.
TWO_LAYER_FIELDS = {"model.top_latent_dim": 2, "model.top_hidden_sizes": (8,)}
TWO_LAYER_OLD = {"model.name": "vae", "model.stochastic_layers": 2, **TWO_LAYER_FIELDS}
TWO_LAYER_NEW = {"model.name": "two_layer_vae", **TWO_LAYER_FIELDS}


def test_an_old_spelling_of_the_two_layer_family_reads_and_compares_as_today_s(tmp_path):
  """A run saved as model.name="vae", model.stochastic_layers=2 reads back as
  model.name="two_layer_vae" and resumes under either spelling: no field reported changed."""
  old = workdir.resolved_config(tiny_config(**TWO_LAYER_OLD))
  new = workdir.resolved_config(tiny_config(**TWO_LAYER_NEW))
  assert (old["model"]["name"], old["model"]["stochastic_layers"]) == ("vae", 2)
  assert (new["model"]["name"], new["model"]["stochastic_layers"]) == ("two_layer_vae", 1)
  _write_info(tmp_path, old)
  back = workdir.read_config(tmp_path)
  assert (back.model.name, back.model.stochastic_layers) == ("two_layer_vae", 1)
  assert json.loads(back.to_json_best_effort()) == json.loads(json.dumps(new))
  # `migrate` returns a copy, and leaves today's spellings (the one-layer VAE's among them) be.
  assert workdir.migrate(old) == new and old["model"]["name"] == "vae"
  for config in (tiny_config(), tiny_config(**TWO_LAYER_NEW)):
    assert workdir.migrate(workdir.resolved_config(config)) == workdir.resolved_config(config)
  # Saved in one spelling, relaunched in another (model.stochastic_layers=2 with
  # model.name="two_layer_vae" is a valid spelling too, and builds the same model): no change.
  both = workdir.resolved_config(tiny_config(**{**TWO_LAYER_NEW, "model.stochastic_layers": 2}))
  for saved in (old, new, both):
    for relaunch in (old, new, both):
      assert workdir.config_differences(saved, relaunch) == [], (saved["model"], relaunch["model"])
  workdir.check_resumable(tmp_path, tiny_config(**TWO_LAYER_NEW))
  workdir.check_resumable(tmp_path, tiny_config(**TWO_LAYER_OLD))
  # Another family is still a change, named by its field.
  one_layer = tiny_config(**TWO_LAYER_FIELDS)
  assert workdir.config_differences(old, workdir.resolved_config(one_layer)) == ["model.name"]
  with pytest.raises(UserError, match=r"fields: model\.name\)"):
    workdir.check_resumable(tmp_path, one_layer)


@pytest.mark.slow
def test_a_two_layer_run_saved_in_the_old_spelling_resumes_bit_exactly_in_the_new(tmp_path):
  """A two-layer VAE trained one epoch as model.name="vae", model.stochastic_layers=2, relaunched
  for two as model.name="two_layer_vae": no refusal, and what it reaches is what the run trained
  straight through in the new spelling reaches."""
  ds = fake_dataset()
  straight = trainer.train_group([tiny_config(num_epochs=2, **TWO_LAYER_NEW)], [tmp_path / "a"],
                                 dataset=ds)[0]
  trainer.train_group([tiny_config(num_epochs=1, **TWO_LAYER_OLD)], [tmp_path / "b"], dataset=ds)
  saved = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
  assert (saved["model"]["name"], saved["model"]["stochastic_layers"]) == ("vae", 2)
  resumed = trainer.train_group([tiny_config(num_epochs=2, **TWO_LAYER_NEW)], [tmp_path / "b"],
                                dataset=ds)[0]
  assert resumed["epochs"] == 2
  for k in ("test/neg_elbo", "train/loss"):
    assert resumed[k] == straight[k], k
  config = tiny_config(num_epochs=2, **TWO_LAYER_NEW)
  for pa, pb in zip(final_params(config, tmp_path / "a", ds),
                    final_params(config, tmp_path / "b", ds)):
    np.testing.assert_array_equal(pa, pb)


def test_the_defaults_of_old_runs_come_from_the_package_alone(tmp_path):
  """An installed vae_jax (no configs/ folder beside it) reads an old run's missing fields."""
  site = tmp_path / "site"
  shutil.copytree(ROOT / "vae_jax", site / "vae_jax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  saved = _to_flat_layout(workdir.resolved_config(tiny_config()))
  for name in ("factor_gamma", "dip_lambda_d", "kl_decomposition_points"):
    del saved[name]  # saved before these existed
  _write_info(tmp_path / "run", saved)
  script = f"""
import sys, vae_jax
from vae_jax import workdir
assert vae_jax.__file__.startswith({str(site)!r}), vae_jax.__file__
c = workdir.read_config({str(tmp_path / 'run')!r})
assert "configs" not in sys.modules
print(c.factor_vae.gamma, c.dip_vae.lambda_d, c.kl_decomposition_points)
"""
  env = {**os.environ, "PYTHONPATH": str(site)}
  proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["10.0", "100.0", "1000"]


@pytest.mark.slow
def test_a_run_stopped_with_an_old_config_json_resumes_bit_exactly(tmp_path):
  """A FactorVAE (a tuple field and a module's learning rate among its fields) trained one
  epoch, its config.json rewritten to the old layout, then relaunched for two: no refusal,
  and what it reaches is what the run trained straight through reaches."""
  ds = fake_dataset()
  fields = {"objective": "factor_vae", "factor_vae.discriminator_sizes": (16, 16),
            "factor_vae.gamma": 5.0, "factor_vae.discriminator_learning_rate": 3e-4}
  straight = trainer.train_group([tiny_config(num_epochs=2, **fields)], [tmp_path / "a"],
                               dataset=ds)[0]
  trainer.train_group([tiny_config(num_epochs=1, **fields)], [tmp_path / "b"], dataset=ds)
  info = json.loads((tmp_path / "b" / "config.json").read_text())
  info["config"] = _to_flat_layout(info["config"])
  (tmp_path / "b" / "config.json").write_text(json.dumps(info))
  assert workdir.read_config(tmp_path / "b").factor_vae.discriminator_sizes == (16, 16)
  resumed = trainer.train_group([tiny_config(num_epochs=2, **fields)], [tmp_path / "b"],
                              dataset=ds)[0]
  assert resumed["epochs"] == 2
  for k in ("test/neg_elbo", "train/loss", "train/total_correlation"):
    assert resumed[k] == straight[k], k
  config = tiny_config(num_epochs=2, **fields)
  for pa, pb in zip(final_params(config, tmp_path / "a", ds),
                    final_params(config, tmp_path / "b", ds)):
    np.testing.assert_array_equal(pa, pb)
  # Against an old config.json a changed objective field is still refused, by its new name.
  (tmp_path / "b" / "config.json").write_text(json.dumps(info))
  with pytest.raises(UserError, match=r"fields: factor_vae\.gamma\)"):
    workdir.check_resumable(tmp_path / "b", tiny_config(num_epochs=2, **{**fields,
                                                                         "factor_vae.gamma": 6.0}))


@pytest.mark.slow
def test_the_command_line_sets_an_objective_field_and_resumes_an_old_run(tmp_path):
  """launch.py --config.beta_tcvae.beta=3: recorded in the nested layout; a run stopped after
  one epoch whose config.json is in the old flat layout resumes (no refusal) to the numbers
  of the run trained straight through; a finished old run is read by the tools."""
  path = tmp_path / "tiny.py"
  path.write_text(TINY_CONFIG_FILE.format(cache_dir=write_fake_cache(tmp_path / "cache")))
  base = ["--config", str(path), "--nosweep", "--config.objective=beta_tcvae",
          "--config.beta_tcvae.beta=3", "--config.kl_decomposition_points=0"]
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  for args in (["--workdir", str(straight)], ["--workdir", str(resumed), "--config.num_epochs=1"]):
    proc = launch([*base, *args])
    assert proc.returncode == 0, proc.stderr[-3000:]
  saved = json.loads((straight / "config.json").read_text())["config"]
  assert saved["beta_tcvae"] == {"alpha": 1.0, "beta": 3.0, "gamma": 1.0, "estimator": "mss"}
  assert "tcvae_beta" not in saved
  for folder in (straight, resumed):
    info = json.loads((folder / "config.json").read_text())
    info["config"] = _to_flat_layout(info["config"])
    (folder / "config.json").write_text(json.dumps(info))
  proc = launch([*base, "--workdir", str(resumed)])
  assert proc.returncode == 0, proc.stderr[-3000:]
  a, b = (json.loads((w / "results.json").read_text()) for w in (straight, resumed))
  assert b["epochs"] == 2
  for k in ("test/neg_elbo", "train/loss", "train/total_correlation"):
    assert a[k] == b[k], k
  # The finished old run: reported finished (not refused), and read back by the tools.
  proc = launch([*base, "--workdir", str(straight)])
  assert proc.returncode == 0 and "finished" in proc.stdout, proc.stderr[-3000:]
  config, _, _ = workdir.load_run(straight)
  assert config.beta_tcvae.beta == 3.0 and config.objective == "beta_tcvae"


# --- loading config files ------------------------------------------------------------------


@pytest.mark.parametrize("body,words,imports", [
    (None, ["no such file"], False),
    ("folder", ["is a folder"], False),
    ("import not_a_module\ndef get_config():\n  return None\n",
     [", line 1:", "does not import", "ModuleNotFoundError", "not_a_module"], False),
    ("def get_config(:\n", [", line 1:", "SyntaxError"], False),
    ("VALUE = 1\n", ["defines no get_config()"], False),
    ("def get_config():\n  x = 1\n  return x / 0\n",
     [", line 3:", "get_config() raised", "ZeroDivisionError"], True),
    ("def get_config():\n  return {'beta': 1.0}\n",
     ["get_config() returned dict", "ml_collections.ConfigDict"], True),
])
def test_a_config_file_that_does_not_load_fails_in_one_line_naming_it(tmp_path, body, words,
                                                                       imports):
  path = tmp_path / "broken.py"
  if body == "folder":
    path.mkdir()
  elif body is not None:
    path.write_text(body)
  for load in (config_lib.load_file, sweeps.load_module):
    if load is sweeps.load_module and imports:
      assert callable(load(str(path)).get_config)  # it imports the file, calls nothing
      continue
    with pytest.raises(UserError) as e:
      load(str(path))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"config {path}"), msg
    for w in words:
      assert w in msg, (w, msg)


def test_a_config_file_with_an_argument(tmp_path):
  path = tmp_path / "variants.py"
  path.write_text("from configs import default\n"
                  "def get_config(arg=None):\n"
                  "  c = default.get_config()\n"
                  "  c.beta_tcvae.beta = float(arg) if arg else 6.0\n"
                  "  return c\n")
  loaded = config_lib.load_file(f"{path}:2.5")
  assert loaded.arg == "2.5" and loaded.config.beta_tcvae.beta == 2.5
  assert loaded.module.get_config().beta_tcvae.beta == 6.0
  plain = config_lib.load_file(str(path))
  assert plain.arg is None and plain.config.beta_tcvae.beta == 6.0
  with pytest.raises(UserError, match=r"line 4: get_config\('x'\) raised ValueError"):
    config_lib.load_file(f"{path}:x")


@pytest.mark.parametrize("name,variants", [("celeba_beta", ("2d",)),
                                           ("dsprites_chen", ("cpu", "cpu2048")),
                                           ("mnist_vampprior", ("smoke",))])
def test_an_unknown_variant_of_a_config_file_is_one_line_naming_what_it_has(name, variants):
  path = f"configs/{name}.py"
  module = config_lib.load_module(str(ROOT / path))
  assert module.VARIANTS == variants
  expected = f"{path}:3d is not a variant; expected none or {', '.join(variants)}"
  calls = [module.get_config] + ([module.get_sweep] if name == "celeba_beta" else [])
  for call in calls:
    with pytest.raises(UserError) as e:
      call("3d")
    assert str(e.value) == expected
  # Through the loader: the same line, after the file and the line of the file that raised it.
  with pytest.raises(UserError) as e:
    config_lib.load_file(f"{ROOT / path}:3d")
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith(f"config {ROOT / path}, line ") and msg.endswith(
      f"get_config('3d') raised UserError: {expected}"), msg
  for variant in (None, *variants):  # each variant it has, and none, loads
    arg = f":{variant}" if variant else ""
    assert config_lib.load_file(f"{ROOT / path}{arg}").arg == variant


@pytest.mark.slow
def test_launch_names_a_folder_and_an_old_field_name_in_one_line(tmp_path):
  for args, words in ((["--config", str(tmp_path)], [str(tmp_path), "is a folder"]),
                      (["--config", "configs/mnist_vae.py", "--config.tcvae_beta=4"],
                       ["--config.tcvae_beta", "--config.beta_tcvae.beta"])):
    proc = launch([*args, "--workdir", str(tmp_path / "w")])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert all(w in lines[0] for w in words), lines
  assert not (tmp_path / "w").exists()
