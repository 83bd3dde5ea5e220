"""Denoising evaluation of a finished run: corrupted test images in, clean images expected.

    python -m vae_jax.tools.denoise --workdir runs/mnist_denoise [--corruption mask --level 0.5]

Corrupts the whole test split once with a fixed key (the run's `config.data.corruption` and
level unless overridden), reconstructs it (decoded latent means) and compares with the clean
images: per-pixel mean squared error and PSNR (10 log10(1 / MSE) per image, pixels in [0, 1],
averaged over images) of the denoised output, beside the same numbers for the corrupted input
itself and for the reconstruction of the clean input. Writes them into DIR/results.json under
"denoise/..." and the figure DIR/denoising.png (rows: corrupted, denoised, clean). Bad input
prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from absl import app, flags  # pylint: disable=g-import-not-at-top

# pylint: disable=g-import-not-at-top
from vae_jax import latents, rng, tools, workdir as workdir_lib
from vae_jax.data import corruption
from vae_jax.figures import grids
from vae_jax.errors import UserError, check_tool_arguments
# pylint: enable=g-import-not-at-top

_NUM_SHOWN = 12  # columns of the figure


def _psnr(mse_N):
  return 10.0 * np.log10(1.0 / np.maximum(mse_N, 1e-12))


def denoising_metrics(model, clean_u8: np.ndarray, kind: str, level: float, key) -> tuple[dict, dict]:
  """Denoising metrics of `model` on `clean_u8` corrupted with (kind, level, key).

  Returns (metrics, images): metrics "mse_input" / "psnr_input" (corrupted vs clean),
  "mse_output" / "psnr_output" (denoised vs clean), "mse_clean_recon" / "psnr_clean_recon"
  (reconstruction of the clean input); images "noisy", "denoised", "clean" in [0, 1].
  """
  clean = np.asarray(clean_u8, np.float32) / 255.0
  noisy = np.asarray(corruption.corrupt(kind, jnp.asarray(clean), key, level), np.float32)
  # Encode the float inputs directly: rounding to uint8 would change the corruption.
  denoised = latents.reconstruct(model, noisy)
  recon = latents.reconstruct(model, clean_u8)
  per_image = lambda a: np.mean(np.square(a - clean).reshape(len(clean), -1), axis=1)
  metrics = {}
  for name, out in (("input", noisy), ("output", denoised), ("clean_recon", recon)):
    mse = per_image(out)
    metrics[f"mse_{name}"] = float(mse.mean())
    metrics[f"psnr_{name}"] = float(_psnr(mse).mean())
  return metrics, {"noisy": noisy, "denoised": denoised, "clean": clean}


def save_figure(path, images: dict, n: int = _NUM_SHOWN, title: str = "") -> str:
  """Rows: corrupted inputs, their denoised reconstructions, the clean images."""
  rows = np.concatenate([images["noisy"][:n], images["denoised"][:n], images["clean"][:n]])
  return grids.save_grid(path, rows, n, title, ["corrupted", "denoised", "clean"])


def denoise_workdir(workdir, corruption_kind: str | None = None, level: float | None = None, *,
                    seed: int = 0, dataset=None) -> dict:
  """Runs `denoising_metrics` on a finished run's test split; writes results.json and the figure.

  Returns the "denoise/..." entries added. Raises `UserError` on bad input.
  """
  if not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir} does not exist")
  config = workdir_lib.read_config(workdir)
  kind = corruption_kind or config.data.corruption
  level = config.data.corruption_level if level is None else level
  if kind not in corruption.KINDS[1:]:
    raise UserError(f"--corruption={kind!r} is invalid: expected one of "
                    f"{', '.join(corruption.KINDS[1:])} (the run itself was trained with "
                    f"data.corruption={config.data.corruption!r})")
  if not (level > 0 and (kind == "gaussian" or level <= 1)):
    raise UserError(f"--level={level} is invalid: expected a number > 0"
                    + ("" if kind == "gaussian" else " and <= 1"))
  _, model, ds, _ = tools.load_run(workdir, dataset=dataset)
  key = rng.denoise_key(seed)
  metrics, images = denoising_metrics(model, ds.test_images, kind, level, key)
  out = {f"denoise/{k}": v for k, v in metrics.items()}
  out.update({"denoise/corruption": kind, "denoise/level": float(level), "denoise/seed": seed})
  figure = pathlib.Path(workdir) / "denoising.png"
  save_figure(figure, images, title=f"{kind} (level {level:g}): PSNR {metrics['psnr_input']:.1f} dB"
              f" -> {metrics['psnr_output']:.1f} dB")
  workdir_lib.update_results(workdir, out)
  return out


def main(argv):
  check_tool_arguments(argv, flags.FLAGS.workdir)
  try:
    f = flags.FLAGS
    m = denoise_workdir(f.workdir, f.corruption, f.level, seed=f.seed)
  except Exception as e:  # pylint: disable=broad-except  (one line, or raised again)
    tools.refuse(e)
  print(f"{flags.FLAGS.workdir}: {m['denoise/corruption']} {m['denoise/level']:g}: MSE "
        f"{m['denoise/mse_input']:.4f} (corrupted) -> {m['denoise/mse_output']:.4f} (denoised); "
        f"PSNR {m['denoise/psnr_input']:.2f} -> {m['denoise/psnr_output']:.2f} dB "
        f"(clean input reconstructed: {m['denoise/psnr_clean_recon']:.2f} dB); "
        f"figure {pathlib.Path(flags.FLAGS.workdir) / 'denoising.png'}")


def _define_flags():
  """Command-line flags, defined only when run as a program (modules stay importable together)."""
  flags.DEFINE_string("workdir", None, "A finished run's output folder.")
  flags.DEFINE_string("corruption", None, "Corruption; default the run's own.")
  flags.DEFINE_float("level", None, "Corruption level; default the run's own.")
  flags.DEFINE_integer("seed", 0, "Seed of the test corruption.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
