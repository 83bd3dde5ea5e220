"""Sweep figures from the rows of DIR/sweep.csv: the beta rate-distortion plane and the
latent-size curves. Each takes a list of row dicts (override keys such as "beta",
"model.latent_dim", "model.name", "seed", and final metrics such as "test/rec", "test/kl",
"test/neg_elbo") and writes one PNG. Rows that differ only in "seed" are replicates: they
are drawn as one point, mean +- standard deviation.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Iterable

import numpy as np

from vae_jax.plots import plt

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


def read_sweep_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
  """DIR/sweep.csv as a list of dicts, numbers parsed."""
  with open(path, newline="") as f:
    return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


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
      vals = np.array([float(r[m]) for r in members if _is_number(r.get(m))])
      if len(vals):
        g[m], g[m + ":std"] = float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    out.append(g)
  return out


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def plot_rate_distortion(rows: list[dict], path: str | os.PathLike, *,
                         rate: str = "test/kl", distortion: str = "test/rec") -> str:
  """Rate (test KL) against distortion (test reconstruction NLL), one labelled point per beta.

  Dashed lines are R + D = const (the -ELBO); points of other override settings (e.g. latent
  sizes) form separate series. Replicates over seeds get mean +- std error bars.
  """
  groups = [g for g in group_replicates(rows, (rate, distortion)) if rate in g and distortion in g]
  if not groups:
    raise ValueError(f"no rows with both {rate!r} and {distortion!r}")
  series_keys = [k for k in groups[0] if k not in ("beta", "n") and ":" not in k and "/" not in k
                 and len({repr(g.get(k)) for g in groups}) > 1]
  fig, ax = plt.subplots(figsize=(7.5, 5.8))
  d_all = np.array([g[distortion] for g in groups])
  r_all = np.array([g[rate] for g in groups])
  pad_x, pad_y = 0.08 * np.ptp(d_all) + 1, 0.1 * np.ptp(r_all) + 1
  xlim = (d_all.min() - pad_x, d_all.max() + 3 * pad_x)
  ylim = (max(0.0, r_all.min() - pad_y), r_all.max() + 2 * pad_y)
  ax.set_xlim(*xlim)
  ax.set_ylim(*ylim)
  p0, p1 = ax.transData.transform([(0.0, 1.0), (1.0, 0.0)])  # on-screen angle of slope -1
  angle = math.degrees(math.atan2(p1[1] - p0[1], p1[0] - p0[0]))
  for level in _nice_levels(xlim[0] + ylim[0], xlim[1] + ylim[1]):
    ax.plot([xlim[0], level - ylim[0]], [level - xlim[0], ylim[0]], ls="--", lw=0.7,
            color="0.6", zorder=0)
    x_top = level - ylim[1] * 0.97  # label where the line leaves the top of the plot
    x_left = xlim[0] + 0.01 * (xlim[1] - xlim[0])  # ... or the left edge
    at = (x_top if xlim[0] < x_top < xlim[1] - 0.04 * (xlim[1] - xlim[0]) else
          x_left if ylim[0] + 0.03 * (ylim[1] - ylim[0]) < level - x_left < ylim[1] else None)
    if at is not None:
      ax.annotate(f"R+D={level:g}", (at, level - at), fontsize=7, color="0.4",
                  rotation=angle, rotation_mode="anchor", ha="left", va="bottom")
  series: dict[tuple, list[dict]] = {}
  for g in groups:
    series.setdefault(tuple(g.get(k) for k in series_keys), []).append(g)
  for i, (sk, gs) in enumerate(sorted(series.items(), key=lambda kv: repr(kv[0]))):
    gs = sorted(gs, key=lambda g: (g.get("beta") is None, g.get("beta") or 0))
    label = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(series_keys, sk)) or None
    x, y = [g[distortion] for g in gs], [g[rate] for g in gs]
    xerr = [g[distortion + ":std"] for g in gs]
    yerr = [g[rate + ":std"] for g in gs]
    color = plt.get_cmap("tab10")(i % 10)
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o-", ms=5, lw=1, capsize=3, color=color,
                label=label)
    for g in gs:
      text = f"β={_fmt(g['beta'])}" if "beta" in g else ""
      if g["n"] > 1:
        text += f" (n={g['n']})"
      ax.annotate(text, (g[distortion], g[rate]), textcoords="offset points", xytext=(6, 4),
                  fontsize=8)
  ax.set_xlabel("distortion D = test reconstruction NLL (nats / image)")
  ax.set_ylabel("rate R = test KL(q(z|x) || p(z)) (nats / image)")
  ax.set_title("β-VAE rate–distortion plane (dashed: constant R + D = -ELBO)", fontsize=10)
  if any(l for l in ax.get_legend_handles_labels()[1]):
    ax.legend(fontsize=8, frameon=False)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def _nice_levels(lo: float, hi: float, count: int = 12) -> list[float]:
  span = max(hi - lo, 1.0)
  step = 10 ** math.floor(math.log10(span / count))
  step *= min((m for m in (1, 2, 5, 10) if span / (step * m) <= count + 1), default=10)
  start = math.floor(lo / step) * step
  return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def plot_latent_size(rows: list[dict], path: str | os.PathLike, *,
                     size_key: str = "model.latent_dim", kind_key: str = "model.name") -> str:
  """Test reconstruction NLL and -ELBO (and the IWAE NLL when present) against latent size,
  one panel per model kind (AE, VAE), sharing the y axis."""
  metrics = ("test/rec", "test/neg_elbo", "test/nll")
  groups = [g for g in group_replicates(rows, metrics) if _is_number(g.get(size_key))]
  if not groups:
    raise ValueError(f"no rows with a numeric {size_key!r}")
  kinds = sorted({str(g.get(kind_key, "model")) for g in groups}, key=lambda k: (k != "ae", k))
  fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.6), sharey=True,
                           squeeze=False)
  names = {"test/rec": "reconstruction NLL", "test/neg_elbo": "-ELBO", "test/nll": "NLL (IWAE)"}
  for ax, kind in zip(axes[0], kinds):
    gs = sorted((g for g in groups if str(g.get(kind_key, "model")) == kind), key=lambda g: g[size_key])
    for m, marker in zip(metrics, "osd"):
      if kind == "ae" and m != "test/rec":
        continue  # an AE has no KL: its -ELBO would just repeat rec, and no likelihood
      pts = [g for g in gs if m in g]
      if pts:
        ax.errorbar([g[size_key] for g in pts], [g[m] for g in pts],
                    yerr=[g[m + ":std"] for g in pts], fmt=marker + "-", capsize=3, ms=5,
                    label=f"test {names[m]}")
    ax.set_xscale("log", base=2)
    sizes = sorted({g[size_key] for g in gs})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("latent size (model.latent_dim)")
    ax.set_title({"ae": "AE (deterministic)", "vae": "VAE"}.get(kind, kind), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
  axes[0, 0].set_ylabel("nats / test image")
  fig.suptitle("Test reconstruction and likelihood against latent size", fontsize=11)
  return _save(fig, path)


def _save(fig, path) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return os.fspath(path)
