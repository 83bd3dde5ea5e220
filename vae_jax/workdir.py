"""A run's folder: what it records about itself, whether it is finished, and reading it back.

    config, model, dataset = workdir.load_run("runs/vae30")

DIR/config.json holds the resolved config, the code version, libraries and devices
(`run_info`); DIR/results.json the final metrics, with "epochs" equal to the config's
`num_epochs` once the run is finished (`is_finished`, the one place that decides it). A
relaunch into a workdir must not change what it computes (`check_resumable`). The model is
rebuilt from the saved config (`models.init_params`: the same code path as training) and its
parameters restored from the newest Orbax checkpoint in DIR/checkpoints.

A saved config is read in today's layout: fields renamed since it was saved are moved to their
new names and values respelled since take today's spelling (`migrate`, from `RENAMED_FIELDS` and
`RENAMED_VALUES`: the one place that knows the old names) and fields added since take their
defaults (`default_fields`, from the package's `vae_jax/config.py`), both when it is read back
(`read_config`) and when it is compared with a relaunch's config (`config_differences`, which
reads the relaunch's config the same way), so an old run resumes, with its old spelling or
today's, and its tools read it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import pathlib
import subprocess
from typing import Any

import jax
from flax import nnx
from ml_collections import config_dict

from vae_jax import checkpoints, config as config_lib, data as data_lib, models, objectives
from vae_jax import optim
from vae_jax.errors import UserError
from vae_jax.runtime.files import quarantine, write_json  # noqa: F401  (the workdir's files)

_LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "wandb",
              "ml-collections", "numpy", "scikit-learn")
# Fields that may change between launches of the same workdir without changing what is
# computed (or, for num_epochs, only extending it).
RESUMABLE_CHANGES = ("num_epochs", "eval_every_epochs", "checkpoint_every_epochs",
                     "keep_checkpoints", "num_plot_images", "write_figures", "eval_batch_size", "eval_nll_k",
                     "kl_decomposition_points", "eval_disentanglement",
                     "disentanglement_sample_scale", "wandb.",
                     # a sweep member's seed is in its own config; how many seeds the sweep
                     # has changes nothing the member computes (sweeps.expand)
                     "num_seeds",
                     # how, not what: the same function to float rounding (vae_jax/convolutions.py)
                     "model.conv_lowering",
                     # where the same data lives on this machine (a workdir moved CPU -> GPU)
                     "data.manual_dir", "data.tfds_dir", "data.cache_dir")
# Tuple fields, which JSON saves as lists: read back as tuples (as the config files set them).
_TUPLE_FIELDS = ("model.hidden_sizes", "model.conv_channels", "model.top_hidden_sizes",
                 "model.decoder_hidden_sizes", "data.exclude_labels",
                 "factor_vae.discriminator_sizes")
# Fields renamed or moved since runs were first saved: old dotted name -> new dotted name
# (`migrate`). A field renamed in vae_jax/config.py gets its entry here.
RENAMED_FIELDS = {
    # Each objective's own fields, once flat at the top level, moved into a sub-dict named for
    # the objective (`objectives.CONFIG_SECTIONS`).
    "annealed_gamma": "annealed_vae.gamma",
    "annealed_capacity_max": "annealed_vae.capacity_max",
    "annealed_capacity_steps": "annealed_vae.capacity_steps",
    "tcvae_alpha": "beta_tcvae.alpha",
    "tcvae_beta": "beta_tcvae.beta",
    "tcvae_gamma": "beta_tcvae.gamma",
    "tcvae_estimator": "beta_tcvae.estimator",
    "dip_lambda_od": "dip_vae.lambda_od",
    "dip_lambda_d": "dip_vae.lambda_d",
    "factor_gamma": "factor_vae.gamma",
    "factor_discriminator_learning_rate": "factor_vae.discriminator_learning_rate",
    "factor_discriminator_sizes": "factor_vae.discriminator_sizes",
}
# Values respelled since runs were first saved, after the fields are renamed (`migrate`): each
# entry (old spelling, today's spelling), each spelling the values of one or more fields (dotted
# names, today's). A config with every field of an old spelling at its value takes today's
# spelling's values. A family renamed in `models.FAMILIES` gets its entry here.
RENAMED_VALUES = (
    # The two-layer VAE, saved before the family table as model.name="vae" with
    # model.stochastic_layers=2 (`models.family_name`). Today it is model.name="two_layer_vae",
    # which does not read model.stochastic_layers: it is left at its default, 1, whichever of
    # 1 or 2 (both valid) the config said.
    ({"model.name": "vae", "model.stochastic_layers": 2},
     {"model.name": "two_layer_vae", "model.stochastic_layers": 1}),
    ({"model.name": "two_layer_vae", "model.stochastic_layers": 2},
     {"model.stochastic_layers": 1}),
)


# What a run records ----------------------------------------------------------------------


def resolved_config(config) -> dict[str, Any]:
  """The config as plain JSON-able data, with the data folders it will actually use."""
  d = json.loads(config.to_json_best_effort())
  d["data"]["manual_dir"] = data_lib.resolve_manual_dir(config.data)
  d["data"]["cache_dir"] = data_lib.resolve_cache_dir(config.data)
  return d


def _git_commit() -> str | None:
  root = pathlib.Path(__file__).resolve().parent.parent
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                         timeout=5, check=True)
    return out.stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def run_info(config) -> dict[str, Any]:
  """DIR/config.json: the resolved config, git commit, library versions and devices."""
  versions = {}
  for lib in _LIBRARIES:
    try:
      versions[lib] = importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
      versions[lib] = None
  return {
      "config": resolved_config(config),
      "git_commit": _git_commit(),
      "versions": versions,
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
  }


class DamagedFile(UserError):
  """A file of a workdir that exists but does not read back."""


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  """Nested dicts -> one dict with dotted keys ("model.latent_dim")."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def migrate(saved: dict) -> dict:
  """A saved config (nested JSON data, config.json's "config") with the fields renamed since it
  was saved under their new names (`RENAMED_FIELDS`) and the values respelled since in today's
  spelling (`RENAMED_VALUES`); a copy (`saved` is left as it is). A config already in today's
  layout and spelling comes back equal."""
  d = json.loads(json.dumps(saved))
  for old, new in RENAMED_FIELDS.items():
    *old_sections, old_leaf = old.split(".")
    node = d
    for section in old_sections:
      node = node.get(section) if isinstance(node, dict) else None
    if not isinstance(node, dict) or old_leaf not in node:
      continue
    value = node.pop(old_leaf)
    *sections, leaf = new.split(".")
    node = d
    for section in sections:
      node = node.setdefault(section, {})
    node.setdefault(leaf, value)
  for old, new in RENAMED_VALUES:
    if all(_get_dotted(d, key) == (True, value) for key, value in old.items()):
      for key, value in new.items():
        *sections, leaf = key.split(".")
        node = d
        for section in sections:
          node = node.setdefault(section, {})
        node[leaf] = value
  return d


def _get_dotted(d: dict, key: str) -> tuple[bool, Any]:
  """(True, the value at dotted `key` of nested dicts `d`), or (False, None) where none is."""
  *sections, leaf = key.split(".")
  node = d
  for section in sections:
    node = node.get(section) if isinstance(node, dict) else None
  if not isinstance(node, dict) or leaf not in node:
    return False, None
  return True, node[leaf]


@functools.lru_cache(maxsize=1)
def _default_fields() -> tuple[tuple[str, Any], ...]:
  return tuple(flatten(json.loads(config_lib.get_config().to_json_best_effort())).items())


def default_fields() -> dict[str, Any]:
  """The default config's fields (`vae_jax/config.py`, inside the package), flattened, as JSON
  data. A run saved before a field existed is read with that field's default, which by the
  rule of vae_jax/config.py is what the library computed before the field was added."""
  return json.loads(json.dumps(dict(_default_fields())))  # a fresh copy: values may be lists


def config_differences(old: dict, new: dict) -> list[str]:
  """Dotted keys (today's names) whose values differ, ignoring the fields a resumed run may
  change; `old` (a saved config) is read as `read_config` reads it: renamed fields under their
  new names, respelled values in today's spelling, missing ones at their defaults. `new` is
  read in today's spelling too, so a relaunch may spell a value either way."""
  a, b = {**default_fields(), **flatten(migrate(old))}, flatten(migrate(new))
  keys = sorted(set(a) | set(b))
  diffs = [k for k in keys if a.get(k) != b.get(k)]
  return [k for k in diffs if not any(k == r or (r.endswith(".") and k.startswith(r))
                                      for r in RESUMABLE_CHANGES)]


# Reading a run back ----------------------------------------------------------------------


def read_config(workdir) -> config_dict.ConfigDict:
  """The resolved config a run was launched with (DIR/config.json's "config"), in today's
  layout: the fields renamed since it was saved under their new names (`migrate`), the fields
  added since at their defaults."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise UserError(f"{workdir} holds no run: {path} is missing (train it with launch.py first)")
  try:
    d = migrate(json.loads(path.read_text())["config"])
    for key, value in default_fields().items():  # runs saved before the field existed
      *sections, field = key.split(".")
      node = d
      for section in sections:
        node = node.setdefault(section, {})
      node.setdefault(field, value)
    for key in _TUPLE_FIELDS:
      *sections, field = key.split(".")
      node = d
      for section in sections:
        node = node[section]
      if node.get(field) is not None:  # None: an unset optional field (or an old run)
        node[field] = tuple(node[field])
  except (ValueError, KeyError, TypeError, AttributeError):
    raise UserError(f"{path} is not a run's config.json (no 'config' with a 'model')") from None
  return config_dict.ConfigDict(d)


def read_results(workdir) -> dict | None:
  """DIR/results.json, or None when it is missing; `DamagedFile` when it does not read back
  (it may hold a finished run's results, so it is never silently replaced)."""
  path = pathlib.Path(workdir) / "results.json"
  if not path.exists():
    return None
  try:
    results = json.loads(path.read_text())
    if not isinstance(results, dict):
      raise ValueError("not a JSON object")
    return results
  except (OSError, ValueError) as e:
    raise DamagedFile(f"{path} is damaged ({type(e).__name__}) and may hold a finished run's "
                      f"results; move it aside (mv {path} {path}.damaged) and relaunch to "
                      "evaluate the newest checkpoint again") from None


def is_finished(workdir, config=None) -> bool:
  """Whether DIR/results.json records all of the config's epochs (the saved config's when
  none is given)."""
  config = config if config is not None else read_config(workdir)
  results = read_results(workdir)
  return results is not None and results.get("epochs") == config.num_epochs


def check_resumable(workdir, config, allow_config_change: bool = False) -> None:
  """Refuses to resume a workdir whose saved config computes something else than `config`."""
  old = pathlib.Path(workdir) / "config.json"
  if not old.exists():
    return
  try:
    saved = json.loads(old.read_text())["config"]
    flatten(saved)
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    if allow_config_change:  # the user vouches for the config; keep the damaged file aside
      print(f"warning: {old} is damaged ({type(e).__name__}); moved it to {quarantine(old)}")
      return
    raise DamagedFile(f"{old} is damaged ({type(e).__name__}), so the config this workdir was "
                      "trained with is unknown; pass --allow_config_change to resume it with "
                      "this config (the damaged file is kept in DIR/damaged/), or use a new "
                      "--workdir") from None
  if allow_config_change:
    return
  diffs = config_differences(saved, resolved_config(config))
  if diffs:
    raise UserError(f"{workdir} holds a run with a different config (fields: "
                    f"{', '.join(diffs)}); use a new --workdir or pass --allow_config_change")


def last_logged(workdir, key: str) -> float:
  """The last value of `key` in DIR/metrics.jsonl (0 when never logged)."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.is_file():
    return 0.0
  value = 0.0
  for line in path.read_bytes().decode("utf-8", "replace").splitlines():
    try:
      value = float(json.loads(line).get(key, value))
    except (ValueError, AttributeError, TypeError):
      pass  # a damaged line
  return value


def load_run(workdir, *, epoch: int | None = None, require_finished: bool = True,
             dataset: data_lib.Dataset | None = None) -> tuple[Any, nnx.Module, data_lib.Dataset]:
  """Returns (config, model, dataset) of the run in `workdir`.

  Args:
    workdir: a run's output folder (config.json, checkpoints/, results.json).
    epoch: which checkpoint; default the newest.
    require_finished: raise `UserError` unless results.json records every epoch.
    dataset: the run's dataset if already loaded (else loaded from its config).

  Raises:
    UserError: no run in `workdir`, unfinished run, or no such checkpoint.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise UserError(f"workdir {workdir} does not exist")
  config = read_config(workdir)
  if require_finished and not is_finished(workdir, config):
    raise UserError(f"{workdir} holds an unfinished run (results.json missing or short of "
                    f"num_epochs={config.num_epochs}); relaunch it to finish training first")
  if not (workdir / "checkpoints").is_dir():
    raise UserError(f"{workdir} has no checkpoints/ folder")
  ds = dataset if dataset is not None else data_lib.load(config.data)
  graphdef, params, rest = models.init_params(config, ds.image_shape,
                                              objectives.OBJECTIVES[config.objective].modules)
  opt_state = optim.transform(config).init(params)
  ckpt = checkpoints.Checkpointer(workdir, config.keep_checkpoints)
  try:
    epochs = ckpt.all_epochs()
    if not epochs or (epoch is not None and epoch not in epochs):
      want = f"epoch {epoch}" if epoch is not None else "any epoch"
      raise UserError(f"{workdir / 'checkpoints'} holds no checkpoint of {want} "
                      f"(found: {sorted(epochs) or 'none'})")
    params, _ = ckpt.restore(epoch if epoch is not None else max(epochs), params, opt_state)
  finally:
    ckpt.close()
  model = nnx.merge(graphdef, jax.tree.map(jax.numpy.asarray, params), rest)
  return config, model, ds


def update_results(workdir, values: dict) -> dict:
  """Adds `values` to DIR/results.json (read, update, atomic rewrite); returns the new dict."""
  results = read_results(workdir) or {}
  results.update(values)
  write_json(pathlib.Path(workdir) / "results.json", results)
  return results


def find_runs(root) -> list[tuple[pathlib.Path, config_dict.ConfigDict]]:
  """(workdir, config) of every run in `root` itself or its direct subfolders (a sweep's
  members), sorted by path; a run reached twice (a seeded member linked to the one-seed run
  it reuses, `sweeps.reuse_one_seed_runs`) is listed once, under its first name."""
  root = pathlib.Path(root)
  candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
  runs, seen = [], set()
  for p in candidates:
    if (p / "config.json").is_file() and p.resolve() not in seen:
      seen.add(p.resolve())
      runs.append((p, read_config(p)))
  return runs
