"""Reading a run back from its workdir: its config, its trained model, its dataset.

    config, model, dataset = workdir.load_run("runs/vae30")

The model is rebuilt from the `config` saved in DIR/config.json (the same code path as
training: `train.init_member` gives the parameter template) and its parameters restored from
the newest Orbax checkpoint in DIR/checkpoints. Evaluation scripts and experiments use this.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
from flax import nnx
from ml_collections import config_dict

from vae_jax import checkpoints, data as data_lib, optim, runinfo, train
from vae_jax.errors import UserError


def read_config(workdir) -> config_dict.ConfigDict:
  """The resolved config a run was launched with (DIR/config.json's "config")."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise UserError(f"{workdir} holds no run: {path} is missing (train it with launch.py first)")
  try:
    d = json.loads(path.read_text())["config"]
    for key, value in runinfo.ADDED_FIELDS.items():  # runs saved before the field existed
      *sections, field = key.split(".")
      node = d
      for section in sections:
        node = node[section]
      node.setdefault(field, value)
    for section, field in (("model", "hidden_sizes"), ("model", "conv_channels"),
                           ("data", "exclude_labels")):
      d[section][field] = tuple(d[section][field])
  except (ValueError, KeyError, TypeError):
    raise UserError(f"{path} is not a run's config.json (no 'config' with a 'model')") from None
  return config_dict.ConfigDict(d)


def is_finished(workdir, config=None) -> bool:
  """Whether DIR/results.json records all of the config's epochs."""
  config = config if config is not None else read_config(workdir)
  results = train.read_results(workdir)
  return results is not None and results.get("epochs") == config.num_epochs


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
  graphdef, params, rest = train.init_member(config, ds.image_shape)
  opt_state = optim.direction(config.optimizer).init(params)
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
  results = train.read_results(workdir) or {}
  results.update(values)
  runinfo.write_json(pathlib.Path(workdir) / "results.json", results)
  return results


def find_runs(root) -> list[tuple[pathlib.Path, config_dict.ConfigDict]]:
  """(workdir, config) of every run in `root` itself or its direct subfolders (a sweep's
  members), sorted by path."""
  root = pathlib.Path(root)
  candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
  return [(p, read_config(p)) for p in candidates if (p / "config.json").is_file()]
