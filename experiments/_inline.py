"""Helpers for experiments that train several related runs in this process (sharing one
loaded dataset) instead of through the launcher: config overrides, train-or-reuse, tables.

A finished workdir is reused as it is (`train.train_group` only reports it), so relaunching an
experiment after an interruption trains only what is missing.
"""

from __future__ import annotations

import ast
import csv
import pathlib
import sys
from typing import Sequence

import _common  # pylint: disable=import-error

sys.path.insert(0, str(_common.ROOT))  # for `configs`


def apply_overrides(config, overrides: Sequence[str]):
  """Applies `--config.a.b=VALUE` strings (VALUE a Python literal, else a string) in place."""
  for item in overrides:
    key, _, raw = item[len("--config."):].partition("=")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    node = config
    *parents, leaf = key.split(".")
    try:
      for p in parents:
        node = node[p]
      node[leaf] = value
    except (KeyError, AttributeError, TypeError) as e:
      _common.fail(f"{item}: {type(e).__name__}: {e}")
  return config


def train_or_reuse(config, workdir, dataset):
  """Validates, trains into `workdir` unless finished there, and returns the trained model."""
  import jax  # pylint: disable=g-import-not-at-top
  from vae_jax import train, validate, workdir as wd  # pylint: disable=g-import-not-at-top
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    validate.validate(config, num_devices=jax.device_count())
    train.train_group([config], [workdir], dataset=dataset)
    return wd.load_run(workdir, dataset=dataset)[1]
  except UserError as e:
    _common.fail(str(e))


def write_table(out: pathlib.Path, stem: str, header: Sequence[str], rows: Sequence[Sequence],
                title: str, notes: str = "") -> tuple[pathlib.Path, pathlib.Path]:
  """Writes OUT/STEM.csv and OUT/STEM.md (a markdown table under a title and notes)."""
  out.mkdir(parents=True, exist_ok=True)
  csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
  with open(csv_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
  lines = [f"# {title}", "", notes, ""] if notes else [f"# {title}", ""]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  md_path.write_text("\n".join(lines) + "\n")
  return csv_path, md_path
