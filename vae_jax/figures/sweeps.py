"""Sweep figures from the rows of DIR/sweep.csv: the beta rate-distortion plane, the
disentanglement metrics against the swept value, the latent-size curves and AE vs VAE in 2-D.
Which of them a sweep gets is one table, `SWEEP_FIGURES`: (name, applies_to(rows, keys), draw);
`sweep_figures` draws every entry that applies. Each plot takes a list of row dicts (override
keys such as "beta", "model.latent_dim", "model.name", "seed", and final metrics such as
"test/rec", "test/kl", "test/neg_elbo") and writes one PNG, DIR/<name>.png. Rows that differ
only in "seed" are replicates: they are drawn as one point, mean +- std.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Callable

import numpy as np

from vae_jax.analysis import metrics as disentanglement_registry
from vae_jax.figures.grids import plt, save_figure
from vae_jax.sweep_table import group_replicates, is_number

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
  return save_figure(fig, path)


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
  groups = [g for g in group_replicates(rows, metrics) if is_number(g.get(size_key))]
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
  return save_figure(fig, path)


def disentanglement_metrics() -> tuple[str, ...]:
  """The registry's metrics as results.json keys ("disentanglement/mig", ...), in its order."""
  return disentanglement_registry.result_keys()


def plot_metrics_against(rows: list[dict], path: str | os.PathLike, *, key: str = "beta",
                         metrics=None, replicate_key: str = "seed") -> str:
  """One panel per metric (default: every registered disentanglement metric the rows hold)
  against a swept key: the median over seeds as a line, their range (min to max) as a band;
  rows that differ in other swept keys are separate lines."""
  metrics = disentanglement_metrics() if metrics is None else metrics
  metrics = [m for m in metrics if any(is_number(r.get(m)) for r in rows)]
  if not metrics:
    raise ValueError("no rows hold any of the metrics")
  others = sorted({k for r in rows for k in r if "/" not in k and k not in (
      key, replicate_key, "member", "status")})
  others = [k for k in others if len({repr(r.get(k)) for r in rows}) > 1]
  ncols = min(3, len(metrics))
  nrows = -(-len(metrics) // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
  series: dict[tuple, list[dict]] = {}
  for r in rows:
    if is_number(r.get(key)):
      series.setdefault(tuple(r.get(k) for k in others), []).append(r)
  values = sorted({r[key] for rs in series.values() for r in rs})
  log_x = values[0] > 0 and values[-1] / values[0] >= 8
  for ax, m in zip(axes.flat, metrics):
    for i, (sk, rs) in enumerate(sorted(series.items(), key=lambda kv: repr(kv[0]))):
      xs = sorted({r[key] for r in rs})
      per_x = [[float(r[m]) for r in rs if r[key] == x and is_number(r.get(m))] for x in xs]
      pts = [(x, np.median(v), min(v), max(v)) for x, v in zip(xs, per_x) if v]
      if not pts:
        continue
      x, med, lo, hi = map(np.array, zip(*pts))
      color = plt.get_cmap("tab10")(i % 10)
      label = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(others, sk)) or None
      ax.plot(x, med, "o-", ms=4, color=color, label=label)
      ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    ax.set_title(m.split("/")[-1], fontsize=9)
    if log_x:
      ax.set_xscale("log", base=2)
      ax.set_xticks(values, [_fmt(v) for v in values])
    ax.set_xlabel(key, fontsize=8)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(metrics):]:
    ax.set_visible(False)
  if others:
    axes.flat[0].legend(fontsize=6, frameon=False)
  n_rep = max(len([r for r in rs if r[key] == v]) for rs in series.values() for v in values)
  fig.suptitle(f"Disentanglement metrics against {key} (median over seeds, band: range; "
               f"up to {n_rep} per point)", fontsize=10)
  return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Which figures a sweep gets.


def _swept(keys) -> list[str]:
  return [k for k in keys if k != "seed"]


def _draw_ae_vs_vae(path: pathlib.Path, rows: list[dict], keys) -> str | None:
  """Both members' latent scatters and manifolds, when both have a 2-D latent space (else
  None); the title names their dataset."""
  from vae_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from vae_jax.figures import latents  # pylint: disable=g-import-not-at-top
  names = {r.get("model.name"): r["member"] for r in rows}
  _, ae, ds = workdir_lib.load_run(path.parent / names["ae"])
  _, vae, _ = workdir_lib.load_run(path.parent / names["vae"], dataset=ds)
  if not ae.latent_dim == vae.latent_dim == 2:
    return None
  return latents.save_ae_vs_vae(path, ae, vae, ds.test_images, ds.test_labels,
                                dataset_name=ds.name,
                                label_name=latents.scatter_label_name(ds))


@dataclasses.dataclass(frozen=True)
class SweepFigure:
  """A sweep figure: `applies_to(finished rows, swept keys)` says whether the sweep gets it;
  `draw(DIR/<name>.png, finished rows, swept keys)` writes it and returns its path (None where
  it turns out not to apply, e.g. AE vs VAE with latents of more than 2-D)."""

  name: str
  applies_to: Callable[[list[dict], list[str]], bool]
  draw: Callable[[pathlib.Path, list[dict], list[str]], str | None]


SWEEP_FIGURES = (
    SweepFigure("rate_distortion", lambda rows, keys: "beta" in keys,
                lambda path, rows, keys: plot_rate_distortion(rows, path)),
    # Against the one value a sweep varies (seeds aside), when its members hold any metric.
    SweepFigure("disentanglement",
                lambda rows, keys: len(_swept(keys)) == 1 and any(
                    is_number(r.get(m)) for r in rows for m in disentanglement_metrics()),
                lambda path, rows, keys: plot_metrics_against(rows, path, key=_swept(keys)[0])),
    # Latent size against test NLL only when it is what the sweep varies: a sweep that also
    # changes, say, the objective (configs/iwae_table.py) would mix unlike models in one curve.
    SweepFigure("latent_size",
                lambda rows, keys: "model.latent_dim" in keys and set(keys) <= {
                    "model.latent_dim", "model.name", "seed"},
                lambda path, rows, keys: plot_latent_size(rows, path)),
    SweepFigure("ae_vs_vae",
                lambda rows, keys: list(keys) == ["model.name"] and {"ae", "vae"} <= {
                    r.get("model.name") for r in rows},
                _draw_ae_vs_vae),
)


def sweep_figures(workdir: pathlib.Path, rows, keys) -> list[str]:
  """Every figure of `SWEEP_FIGURES` that applies to the sweep's finished members."""
  done = [r for r in rows if r.get("status") == "finished"]
  if not done:
    return []
  paths = [figure.draw(pathlib.Path(workdir) / f"{figure.name}.png", done, keys)
           for figure in SWEEP_FIGURES if figure.applies_to(done, keys)]
  return [p for p in paths if p]
