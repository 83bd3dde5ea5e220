"""DIR/sweep.csv: one row per member (its overrides, status and final metrics), written after
every sweep, read back for figures, and aggregated over seeds into sweep_seeds.csv.

The metric columns are not a list kept here: they are the numeric "family/name" keys the
members' results.json files hold (`metric_columns`), so a new metric in results.json (a new
entry of the metrics registry, `vae_jax.analysis.metrics`) is a new column without an edit
here. Rows that differ only in "seed" are replicates: `group_replicates` reduces them to one
entry with the mean and standard deviation of each metric. Both files are written atomically
(`runtime.files`): a full disk leaves the old file or none, never half of one."""

from __future__ import annotations

import csv
import io
import math
import os
import pathlib
from typing import Any, Iterable

import numpy as np

from vae_jax import workdir as workdir_lib
from vae_jax.analysis import metrics
from vae_jax.runtime import files

# The order of the metric columns, not which there are: these families first, in this order
# (any other family, such as memory/*, follows alphabetically); within a family the headline
# numbers of `_LEADING` first, the registry's metrics in registry order, then the rest by name.
_FAMILIES = ("test", "disentanglement", "train")
_LEADING = ("test/neg_elbo", "test/rec", "test/kl", "test/loss", "train/loss")


# Columns that describe a member's bookkeeping, not a hyperparameter it was trained with.
NON_OVERRIDE_COLUMNS = frozenset({
    "member", "name", "workdir", "dir", "path", "status", "state", "epochs", "steps", "failed",
    "error", "members_trained_together", "group", "run_id", "index"})
REPLICATE_KEY = "seed"


def _parse(v: Any) -> Any:
  if not isinstance(v, str):
    return v
  s = v.strip()
  for cast in (int, float):
    try:
      return cast(s)
    except ValueError:
      pass
  return {"True": True, "False": False, "": None}.get(s, s)


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
  """DIR/sweep.csv as a list of dicts, numbers parsed."""
  try:
    with open(path, newline="") as f:
      rows = [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return rows
  except (OSError, ValueError, csv.Error, AttributeError) as e:  # AttributeError: a short row
    raise workdir_lib.DamagedFile(
        f"{path} is damaged or missing ({type(e).__name__}); it is rebuilt from the members' "
        "results.json by relaunching the sweep's command (finished members are skipped)") from None


def override_keys(rows: Iterable[dict]) -> list[str]:
  """Columns that are hyperparameters: not metrics ("test/...") and not bookkeeping."""
  keys: dict[str, None] = {}
  for r in rows:
    for k in r:
      if "/" not in k and k not in NON_OVERRIDE_COLUMNS:
        keys[k] = None
  return list(keys)


def group_replicates(rows: list[dict], metrics: Iterable[str]) -> list[dict[str, Any]]:
  """One entry per setting of every override key but the seed.

  Returns dicts holding those keys, "n" (replicates), and for each metric m present
  "m" (mean) and "m:std" (standard deviation across seeds; 0 for one replicate).
  """
  keys = [k for k in override_keys(rows) if k != REPLICATE_KEY]
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault(tuple(repr(r.get(k)) for k in keys), []).append(r)
  out = []
  for members in groups.values():
    g = {k: members[0].get(k) for k in keys}
    g["n"] = len(members)
    for m in metrics:
      vals = np.array([float(r[m]) for r in members if is_number(r.get(m))])
      if len(vals):
        g[m], g[m + ":std"] = float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    out.append(g)
  return out


def is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_metric(key: str, value) -> bool:
  """A results.json entry that is a sweep.csv column: a "family/name" key with a number (NaN
  included: a member that measured NaN shows it)."""
  return "/" in key and isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_columns(rows: Iterable[dict]) -> list[str]:
  """The metric keys (`is_metric`) that any of `rows` holds, in a stable order: test/*, then
  disentanglement/* (the registry's metrics in registry order, then the rest such as
  disentanglement/seconds), then train/*, then any other family; within each, `_LEADING`
  first and the rest by name."""
  keys = {k for r in rows for k, v in r.items() if is_metric(k, v)}
  registry = {k: i for i, k in enumerate(metrics.result_keys())}

  def order(key: str):
    family = key.split("/", 1)[0]
    rank = _FAMILIES.index(family) if family in _FAMILIES else len(_FAMILIES)
    first = _LEADING.index(key) if key in _LEADING else len(_LEADING)
    return (rank, family, first, registry.get(key, len(registry)), key)

  return sorted(keys, key=order)


def _write_csv(path: pathlib.Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
  w.writeheader()
  for r in rows:
    w.writerow({k: r.get(k, "") for k in columns})
  files.write_text(path, buf.getvalue())


def write_summary(workdir: pathlib.Path, members, keys: list[str]) -> list[dict[str, Any]]:
  """Writes sweep.csv (a row per member) and, with seeds, sweep_seeds.csv; returns the rows."""
  rows = []
  for name, overrides, _ in members:
    try:
      res, damaged = workdir_lib.read_results(workdir / name) or {}, False
    except workdir_lib.DamagedFile:
      res, damaged = {}, True
    failed = res.get("failed") or (workdir / name / "failed.json").exists()
    row = {"member": name, **overrides,
           "status": "damaged results.json" if damaged else
                     "failed" if failed else ("finished" if res else "missing")}
    row.update({k: v for k, v in res.items() if is_metric(k, v)})
    rows.append(row)
  metrics = metric_columns(rows)
  columns = ["member", *keys, "status", *metrics]
  _write_csv(workdir / "sweep.csv", rows, columns)
  if any(k == "seed" for _, o, _ in members for k in o):
    agg = group_replicates([r for r in rows if r["status"] == "finished"], metrics)
    agg_cols = [k for k in keys if k != "seed"] + ["n"] + [
        c for m in metrics for c in (m, f"{m}:std") if any(c in r for r in agg)]
    _write_csv(workdir / "sweep_seeds.csv", agg, agg_cols)
  return rows
