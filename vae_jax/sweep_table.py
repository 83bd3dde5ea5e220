"""DIR/sweep.csv: one row per member (its overrides, status and final metrics), written after
every sweep, read back for figures, and aggregated over seeds into sweep_seeds.csv.

Rows that differ only in "seed" are replicates: `group_replicates` reduces them to one entry
with the mean and standard deviation of each metric.
"""

from __future__ import annotations

import csv
import io
import math
import os
import pathlib
import tempfile
from typing import Any, Iterable

import numpy as np

from vae_jax import workdir as workdir_lib

METRICS = ("test/neg_elbo", "test/rec", "test/kl", "test/loss", "test/neg_iwae", "test/nll",
           "test/index_code_mi", "test/total_correlation", "test/dimwise_kl",
           *(f"disentanglement/{k}" for k in (
               "beta_vae", "factor_vae", "mig", "mig_chen", "dci_disentanglement",
               "dci_completeness", "dci_informativeness", "sap", "modularity", "explicitness")),
           "train/loss", "train/neg_iwae", "train/examples_per_s", "train/seconds")


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


def _write_csv(path: pathlib.Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
  w.writeheader()
  for r in rows:
    w.writerow({k: r.get(k, "") for k in columns})
  with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
    f.write(buf.getvalue())
  os.replace(f.name, path)


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
    row.update({m: res[m] for m in METRICS if m in res})
    rows.append(row)
  columns = ["member", *keys, "status", *[m for m in METRICS if any(m in r for r in rows)]]
  _write_csv(workdir / "sweep.csv", rows, columns)
  if any(k == "seed" for _, o, _ in members for k in o):
    agg = group_replicates([r for r in rows if r["status"] == "finished"], METRICS)
    agg_cols = [k for k in keys if k != "seed"] + ["n"] + [
        c for m in METRICS for c in (m, f"{m}:std") if any(c in r for r in agg)]
    _write_csv(workdir / "sweep_seeds.csv", agg, agg_cols)
  return rows
