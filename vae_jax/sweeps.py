"""Sweeps: the members a config file defines beside `get_config()`, run from the one launcher.

A config module may define `get_sweep()` returning a list of override dicts with dotted keys,
e.g. `[{"beta": 0.1}, {"beta": 1.0}]` (members named after their overrides, "beta=0.1") or
`[{"beta_tcvae.beta": 4.0}]` (an objective's own field), or a dict from member names to such
dicts, e.g. `{"iwae_k5": {"objective": "iwae", ...}}`, when the overrides make poor folder
names. `run_sweep` trains every member into
`DIR/<member name>/`, writes `DIR/sweep.csv` (`sweep_table.py`) and the sweep's figures
(`figures/sweeps.py`). Members that differ only in shape-preserving values (the seed, the
learning rate, their objective's hyperparameters) train together as one vectorised program
(`trainer.train_group`); the others run group after group. Finished members are skipped on
relaunch, and adding seeds to a finished one-seed sweep reuses its members
(`reuse_one_seed_runs`).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Any, Sequence

from vae_jax import config as config_lib, sweep_table, validate, workdir as workdir_lib
from vae_jax.errors import UserError
from vae_jax.runtime import files

# A sweep: override dicts (members named after their overrides) or a dict of them by name.
Sweep = Sequence[dict[str, Any]] | dict[str, dict[str, Any]]
_MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")  # a folder and W&B run name


def load_module(config_path: str):
  """Imports a config file by path: `config.load_module` (one-line `UserError`s)."""
  return config_lib.load_module(config_path)


def sweep_of(module, arg: str | None = None) -> Sweep | None:
  """The module's sweep (list of override dicts, or dict of them by member name), or None if
  it defines none. `arg`: the config string after the file name (`configs/x.py:ARG`)."""
  if not hasattr(module, "get_sweep"):
    return None
  # `--config=file.py:ARG` hands ARG to get_config(ARG) (ml_collections) and to get_sweep(ARG).
  sweep = module.get_sweep(arg) if arg is not None else module.get_sweep()
  if isinstance(sweep, dict):
    for name, m in sweep.items():
      if not isinstance(name, str) or not _MEMBER_NAME.fullmatch(name) or not isinstance(m, dict):
        raise UserError(f"get_sweep() returned a dict whose entry {name!r} is not a member name "
                        "(letters, digits, '_', '.', '-', '=') mapped to a dict of dotted config "
                        "keys to values")
    return {name: dict(m) for name, m in sweep.items()}
  if not isinstance(sweep, (list, tuple)) or not all(isinstance(m, dict) for m in sweep):
    raise UserError("get_sweep() must return a list of dicts of dotted config keys to values, "
                    f"got {type(sweep).__name__}")
  return [dict(m) for m in sweep]


def format_value(v) -> str:
  if isinstance(v, float):
    return f"{v:g}"
  if isinstance(v, (tuple, list)):
    return "x".join(format_value(x) for x in v)
  return str(v)


def member_name(overrides: dict[str, Any]) -> str:
  """Folder / W&B run name of a member: its overrides as key=value joined by commas."""
  if not overrides:
    return "base"
  return ",".join(f"{k}={format_value(v)}" for k, v in overrides.items())


def named_members(sweep: Sweep) -> list[tuple[str, dict[str, Any]]]:
  """(name, overrides) of each member, for a sweep given as a list or as a dict by name."""
  if isinstance(sweep, dict):
    return list(sweep.items())
  return [(member_name(m), m) for m in sweep]


def _flat_keys(config) -> dict[str, Any]:
  return workdir_lib.flatten(config.to_dict())


def apply_overrides(config, overrides: dict[str, Any]):
  """A copy of `config` with dotted-key overrides applied (types checked by ConfigDict)."""
  c = config.copy_and_resolve_references()
  flat = _flat_keys(c)
  with c.unlocked():
    for key, value in overrides.items():
      if key not in flat:
        renamed = workdir_lib.RENAMED_FIELDS.get(key)
        raise UserError(f"sweep override {key!r} is not a config field; " + (
            f"it is now {renamed!r}" if renamed else "fields look like 'beta', "
            "'model.latent_dim' or 'beta_tcvae.beta' (see vae_jax/config.py)"))
      *parents, leaf = key.split(".")
      node = c
      for p in parents:
        node = node[p]
      try:
        node[leaf] = type(flat[key])(value) if isinstance(flat[key], float) and isinstance(
            value, int) and not isinstance(value, bool) else value
      except (TypeError, ValueError) as e:
        raise UserError(f"sweep override {key}={value!r} has the wrong type: {e}") from None
  c.lock()
  return c


def expand(config, sweep: Sweep) -> list[tuple[str, dict[str, Any], Any]]:
  """(name, overrides, config) for every member, seeds included; validates the definition."""
  if not sweep:
    raise UserError("the sweep is empty: get_sweep() must return at least one member")
  named = named_members(sweep)
  names = [n for n, _ in named]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise UserError(f"the sweep has duplicate members: {', '.join(dupes)}")
  members = []
  for name, overrides in named:
    for s in range(config.num_seeds):
      o = dict(overrides)
      if config.num_seeds > 1:
        o["seed"] = config.seed + s
        name_s = _seeded_name(sweep, name, o)
      else:
        name_s = name
      members.append((name_s, o, apply_overrides(config, o)))
  return members


def _seeded_name(sweep: Sweep, name: str, overrides_with_seed: dict[str, Any]) -> str:
  if isinstance(sweep, dict):
    return f"{name},seed={overrides_with_seed['seed']}"
  return member_name(overrides_with_seed)


def reuse_one_seed_runs(workdir: pathlib.Path, sweep: Sweep, members) -> list[str]:
  """Adding seeds to a finished sweep trains only the new ones.

  A one-seed run of the sweep left member `name` in DIR/<name>/; with `num_seeds` > 1 the same
  member trained with that seed is called `<name>,seed=<s>`. Where DIR/<name>/ is finished and
  holds that member's run (`workdir.check_resumable` accepts it), DIR/<name>,seed=<s> becomes a
  link to it and is skipped as finished. Returns one message per link made.
  """
  by_name = {n: c for n, _, c in members}
  made = []
  for name, overrides in named_members(sweep):
    base = workdir / name
    if base.is_symlink() or not base.is_dir():
      continue
    try:
      seeded = _seeded_name(sweep, name, {**overrides, "seed": workdir_lib.read_config(base).seed})
      link = workdir / seeded
      if seeded not in by_name or link.exists() or link.is_symlink():
        continue
      workdir_lib.check_resumable(base, by_name[seeded])  # the same run, or UserError
      if not workdir_lib.is_finished(base, by_name[seeded]):
        continue
    except UserError:
      continue  # no run there, a damaged one, or another config: train the member as usual
    try:
      os.symlink(name, link, target_is_directory=True)
    except OSError as e:  # a filesystem without links: train it again instead
      made.append(f"{link}: could not link it to the finished {base} ({e.strerror}); training it")
      continue
    made.append(f"{link}: the finished one-seed run {base}, linked instead of trained again")
  return made


def swept_keys(sweep: Sweep) -> list[str]:
  keys = []
  for _, m in named_members(sweep):
    keys += [k for k in m if k not in keys]
  return keys


def pinned_overrides(config, sweep, command_line: dict[str, Any]) -> dict[str, Any]:
  """Swept keys that the command line overrides: they pin a single run to that value."""
  flat = _flat_keys(config)
  return {k: flat[k] for k in swept_keys(sweep) if k in command_line}


def run_sweep(config, sweep: Sweep, workdir: str | os.PathLike, *,
              sweep_name: str, only: str | None = None, allow_config_change: bool = False,
              num_devices: int = 1, pinned: dict[str, Any] | None = None) -> list[dict[str, Any]]:
  """Trains the sweep's members (or only the one named `only`) and writes the summary.

  `pinned`: swept keys that the command line set (`pinned_overrides`); with `only`, they win
  over that member's own values, so `--member=m --config.key=v` runs m with key = v.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from vae_jax.runtime import hosts, locks  # pylint: disable=g-import-not-at-top

  workdir = pathlib.Path(workdir)
  members = expand(config, sweep)
  if only is not None and pinned:
    members = [(n, {**o, **pinned}, apply_overrides(c, pinned)) if n == only else (n, o, c)
               for n, o, c in members]
  for name, _, c in members:
    try:
      validate.validate(c, num_devices=num_devices)
    except UserError as e:
      raise UserError(f"sweep member {name}: {e}") from None
  if only is not None:
    chosen = [m for m in members if m[0] == only]
    if not chosen:
      raise UserError(f"--member={only!r} is not in the sweep; members: "
                      + ", ".join(n for n, _, _ in members))
  else:
    chosen = members
  if config.num_seeds > 1:
    reused = hosts.main_first(lambda: reuse_one_seed_runs(workdir, sweep, chosen),
                              "link the sweep's one-seed runs", others_too=False, share=True)
    if jax.process_index() == 0:
      for line in reused:
        print(line)
  # A member's saved config is checked before it counts as finished: a finished member must
  # not answer for a changed config (the same refusal an unfinished one gets).
  # (With --allow_config_change the user vouches for the config; the member's own launch
  # then deals with a damaged config.json, under its lock.)
  if not allow_config_change:
    for name, _, c in chosen:
      workdir_lib.check_resumable(workdir / name, c)
  todo = [m for m in chosen if not workdir_lib.is_finished(workdir / m[0], m[2])]
  for name, _, c in chosen:
    if workdir_lib.is_finished(workdir / name, c) and jax.process_index() == 0:
      print(f"{workdir / name}: finished, skipped")

  # Each member's workdir is locked while this process trains it, so several agents can share
  # one sweep folder: a member another process holds is left to it.
  busy = dict(hosts.main_first(lambda: _lock_free([workdir / n for n, _, _ in todo]),
                               "lock the sweep's members", others_too=False, share=True))
  if busy and only is not None:
    raise locks.Locked(busy[str(workdir / only)])
  for name, _, _ in todo:
    if str(workdir / name) in busy and jax.process_index() == 0:
      print(f"skipped: {busy[str(workdir / name)]}")
  todo = [m for m in todo if str(workdir / m[0]) not in busy]
  try:
    _train_members(workdir, todo, sweep_name, allow_config_change)
  finally:
    if jax.process_index() == 0:
      locks.release_all([workdir / n for n, _, _ in todo])

  if jax.process_index() != 0:
    return []
  workdir.mkdir(parents=True, exist_ok=True)
  keys = swept_keys([o for _, o, _ in members])
  rows = sweep_table.write_summary(workdir, members, keys)
  from vae_jax.figures import sweeps as sweep_figures  # pylint: disable=g-import-not-at-top
  sweep_figures.sweep_figures(workdir, rows, keys)
  return rows


def _lock_free(workdirs) -> list[tuple[str, str]]:
  """Locks each workdir that no other process holds; returns (workdir, refusal) for the rest."""
  from vae_jax.runtime import locks  # pylint: disable=g-import-not-at-top
  busy = []
  for w in workdirs:
    try:
      locks.acquire(w)
    except locks.Locked as e:
      busy.append((str(w), str(e)))
  return busy


def _train_members(workdir: pathlib.Path, todo, sweep_name: str,
                   allow_config_change: bool) -> None:
  """Trains the members, one vectorised group per set of equal shapes."""
  from vae_jax import trainer  # pylint: disable=g-import-not-at-top
  groups: dict[str, list] = {}
  for m in todo:
    groups.setdefault(trainer.group_key(m[2]), []).append(m)
  datasets: dict[str, Any] = {}
  for group in groups.values():
    data_key = json.dumps(group[0][2].data.to_dict(), sort_keys=True)
    if data_key not in datasets:
      datasets[data_key] = trainer.load_dataset(group[0][2].data)
    configs = []
    for name, overrides, c in group:
      c = c.copy_and_resolve_references()
      with c.unlocked():
        c.wandb.group = c.wandb.group or sweep_name
        c.wandb.name = c.wandb.name or f"{sweep_name}/{name}"
      configs.append(c)
    trainer.train_group(configs, [workdir / n for n, _, _ in group], group_name=sweep_name,
                      allow_config_change=allow_config_change, dataset=datasets[data_key],
                      extra_config=[{"sweep": sweep_name, "sweep_overrides": o} for _, o, _ in group])


def wandb_sweep_spec(sweep: Sweep, *, config_path: str, workdir: str,
                     sweep_name: str) -> dict[str, Any]:
  """A W&B sweep definition (grid) whose runs call launch.py with --config.<key>=<value>.

  W&B grids are Cartesian products, so the sweep must be one: every combination of its
  keys' values is a member.
  """
  keys = swept_keys(sweep)
  values = {k: [] for k in keys}
  for _, m in named_members(sweep):
    if set(m) != set(keys):
      raise UserError("the sweep sets different keys in different members; a W&B grid needs "
                      f"every member to set all of {keys}")
    for k in keys:
      if m[k] not in values[k]:
        values[k].append(m[k])
  size = 1
  for v in values.values():
    size *= len(v)
  if size != len(sweep):
    raise UserError(f"the sweep is not a grid ({len(sweep)} members, {size} combinations of "
                    "its values); a W&B grid sweep cannot express it")
  plain = lambda v: list(v) if isinstance(v, tuple) else v
  return {
      "name": sweep_name,
      "program": "launch.py",
      "method": "grid",
      "parameters": {f"config.{k}": {"values": [plain(v) for v in vals]}
                     for k, vals in values.items()},
      "command": ["${env}", "${interpreter}", "${program}", f"--config={config_path}",
                  f"--workdir={workdir}", "--member_subdir", "${args}"],
  }


def export_wandb_sweep(path: str | os.PathLike, spec: dict[str, Any]) -> None:
  import yaml  # pylint: disable=g-import-not-at-top  (a dependency of wandb)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  files.write_text(path, yaml.safe_dump(spec, sort_keys=False))
