"""PyTorch baselines for the core and the conv VAE: the same model, objective and loop, written plainly.

    python -m benchmarks.torch_baseline [--model mlp|conv] [--epochs 5] [--device cpu|cuda]
                                        [--threads N]

Prints ONE JSON object. Needs PyTorch (`pip install -e ".[bench]"`) and MNIST prepared by
vae_jax (any launch, or `train_throughput.py`, writes `<cache>/mnist/train.npz`, which this
reads with NumPy; `--data` points elsewhere). It never imports JAX, so the two frameworks do
not share a process or its threads.

What it trains is what `configs/mnist_vae.py` trains, the way a PyTorch user would write it:
an `nn.Module` MLP VAE 784-400-20 (ReLU, Bernoulli logits), the uint8 training split held in
memory on the device and indexed by a fresh `torch.randperm` each epoch (no DataLoader; the
last partial batch is dropped, 468 steps of 128 as in JAX), dynamic binarisation
(`torch.bernoulli` of the grey levels, fresh every step), `torch.optim.Adam(lr=1e-3)` with
PyTorch's defaults (betas 0.9 / 0.999, eps 1e-8: optax's too), and loss =
BCE-with-logits summed over pixels + analytic KL, averaged over the batch. The per-step loss
is accumulated on the device and read once per epoch, as the JAX loop does with its metrics;
a `loss.item()` every step would add a host sync per step (costly on a GPU).

`--model conv` trains what `configs/mnist_conv.py` trains instead, with the same loop: encoder
Conv2d 1->16 and 16->32 (4x4, stride 2, padding 1: 28 -> 14 -> 7), ReLU after each, dense
1568-256-(2x20); decoder dense 20-256-1568, ReLU after each, then ConvTranspose2d 32->16 (ReLU)
and 16->1 (4x4, stride 2, padding 1: 7 -> 14 -> 28), Bernoulli logits. These are the shapes
and FLOPs of flax's SAME-padded stride-2 convolutions in vae_jax's ConvEncoder / ConvDecoder.

Timing: each epoch is timed from its first batch to its last optimizer step (with
`torch.cuda.synchronize()` on a GPU). "examples_per_s" is the median over the epochs after the
first (the first pays for warm-up: allocator growth, oneDNN / cuBLAS heuristics, and with
`--compile` the compilation), so ask for at least 2 epochs.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()  # before importing torch: "seconds_to_first_step" includes it

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import datetime
import json
import os
import pathlib
import platform
import resource
import statistics

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class VAE(nn.Module):
  """MLP VAE: encoder 784-400-(2x20), decoder 20-400-784 (Bernoulli logits)."""

  def __init__(self, image_size: int = 784, hidden: int = 400, latent: int = 20):
    super().__init__()
    self.encoder = nn.Sequential(nn.Linear(image_size, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * latent))
    self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                 nn.Linear(hidden, image_size))

  def forward(self, x_BxD):
    mean_BxZ, logvar_BxZ = self.encoder(x_BxD).chunk(2, dim=-1)
    z_BxZ = mean_BxZ + torch.exp(0.5 * logvar_BxZ) * torch.randn_like(mean_BxZ)
    return self.decoder(z_BxZ), mean_BxZ, logvar_BxZ


class ConvVAE(nn.Module):
  """The conv VAE of configs/mnist_conv.py (channels 16, 32; dense 256; 20 latents)."""

  def __init__(self, channels=(16, 32), hidden: int = 256, latent: int = 20):
    super().__init__()
    c1, c2 = channels
    self.c2 = c2
    self.encoder = nn.Sequential(
        nn.Conv2d(1, c1, 4, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(7 * 7 * c2, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
    self.decoder_mlp = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 7 * 7 * c2), nn.ReLU())
    self.decoder_conv = nn.Sequential(nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(),
                                      nn.ConvTranspose2d(c1, 1, 4, 2, 1))

  def forward(self, x_BxD):
    x_Bx1xHxW = x_BxD.view(-1, 1, 28, 28)
    mean_BxZ, logvar_BxZ = self.encoder(x_Bx1xHxW).chunk(2, dim=-1)
    z_BxZ = mean_BxZ + torch.exp(0.5 * logvar_BxZ) * torch.randn_like(mean_BxZ)
    h = self.decoder_mlp(z_BxZ).view(-1, self.c2, 7, 7)
    return self.decoder_conv(h).flatten(1), mean_BxZ, logvar_BxZ


MODELS = {
    "mlp": (VAE, "MLP 784-400-20 VAE, Bernoulli logits, dynamic binarisation"),
    "conv": (ConvVAE, "conv VAE of configs/mnist_conv.py (conv 16-32, dense 256, 20 latents), "
                      "Bernoulli logits, dynamic binarisation"),
}


def neg_elbo(logits_BxD, x_BxD, mean_BxZ, logvar_BxZ):
  """Batch mean of -ELBO in nats: Bernoulli NLL summed over pixels + KL(q || N(0, I))."""
  rec_B = F.binary_cross_entropy_with_logits(logits_BxD, x_BxD, reduction="none").sum(-1)
  kl_B = 0.5 * (logvar_BxZ.exp() + mean_BxZ.square() - 1.0 - logvar_BxZ).sum(-1)
  return (rec_B + kl_B).mean()


def default_data_path() -> pathlib.Path:
  """Where vae_jax caches the prepared MNIST train split (vae_jax.data.resolve_cache_dir)."""
  root = os.environ.get("VAE_JAX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                             "vae_jax")
  return pathlib.Path(root) / "mnist" / "train.npz"


def train(args) -> dict:
  """Trains for args.epochs; returns the timings and the last epoch's mean train -ELBO."""
  device = torch.device(args.device)
  torch.manual_seed(args.seed)
  images_u8 = np.load(args.data)["images"]  # (N, 28, 28, 1) uint8, as vae_jax caches it
  images_NxD = torch.from_numpy(images_u8.reshape(len(images_u8), -1)).to(device)
  num_train, batch = images_NxD.shape[0], args.batch_size
  steps = num_train // batch
  model = MODELS[args.model][0]().to(device)
  step_fn = model
  if args.compile:
    step_fn = torch.compile(model)
  opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate)

  def sync():
    if device.type == "cuda":
      torch.cuda.synchronize()

  epoch_seconds, epoch_neg_elbo, first_step = [], [], None
  for _ in range(args.epochs):
    sync()
    t0 = time.perf_counter()
    perm = torch.randperm(num_train, device=device)
    total = torch.zeros((), device=device)
    for s in range(steps):
      x_BxD = torch.bernoulli(images_NxD[perm[s * batch:(s + 1) * batch]].float() / 255.0)
      logits, mean, logvar = step_fn(x_BxD)
      loss = neg_elbo(logits, x_BxD, mean, logvar)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      total += loss.detach()
      if first_step is None:
        sync()
        first_step = time.perf_counter() - _T_START
    epoch_neg_elbo.append(total.item() / steps)  # .item() waits for the epoch's last step
    sync()
    epoch_seconds.append(time.perf_counter() - t0)
  return {"steps": steps, "num_train": num_train, "epoch_seconds": epoch_seconds,
          "epoch_neg_elbo": epoch_neg_elbo, "first_step": first_step}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="mlp", choices=sorted(MODELS),
                      help="mlp: configs/mnist_vae.py's model; conv: configs/mnist_conv.py's")
  parser.add_argument("--epochs", type=int, default=5, help="at least 2 for a steady state")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--learning_rate", type=float, default=1e-3)
  parser.add_argument("--device", default="cpu", help="cpu or cuda")
  parser.add_argument("--threads", type=int, default=0,
                      help="torch.set_num_threads (0: PyTorch's default, one per physical core)")
  parser.add_argument("--compile", action="store_true", help="torch.compile the model")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data", type=pathlib.Path, default=None,
                      help="train.npz of prepared MNIST (default: vae_jax's cache)")
  args = parser.parse_args()
  args.data = args.data or default_data_path()
  if not args.data.is_file():
    raise SystemExit(f"error: {args.data} is missing: prepare MNIST first (any vae_jax launch "
                     "on MNIST, or python -m benchmarks.train_throughput) or pass --data")
  if args.device.startswith("cuda") and not torch.cuda.is_available():
    raise SystemExit(f"error: --device={args.device} but this PyTorch build sees no CUDA device")
  if args.threads:
    torch.set_num_threads(args.threads)

  run = train(args)
  seconds = run["epoch_seconds"]
  steady = seconds[1:] or seconds  # one epoch only: no steady state, report it anyway
  examples = run["steps"] * args.batch_size
  rates = [examples / s for s in seconds]
  device = torch.device(args.device)
  if device.type == "cuda":
    device_name = f"cuda:{torch.cuda.get_device_name(device)}"
    peak, peak_source = torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
  else:
    device_name = "cpu"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak_source = "process_max_rss"
  print(json.dumps({
      "benchmark": "torch_baseline" if args.model == "mlp" else "torch_conv_baseline",
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "model": MODELS[args.model][1],
      "epochs": args.epochs, "batch_size": args.batch_size, "steps_per_epoch": run["steps"],
      "examples_per_s": round(examples / statistics.median(steady)),
      "seconds_per_epoch": round(statistics.median(steady), 3),
      "examples_per_s_per_epoch": [round(r) for r in rates],
      "steady_state_epochs": len(seconds) - 1 if len(seconds) > 1 else 0,
      "seconds_to_first_step": round(run["first_step"], 2),
      "final_epoch_train_neg_elbo": round(run["epoch_neg_elbo"][-1], 3),
      "train_neg_elbo_per_epoch": [round(v, 3) for v in run["epoch_neg_elbo"]],
      "peak_memory_bytes": int(peak), "peak_memory_source": peak_source,
      "torch_version": torch.__version__, "threads": torch.get_num_threads(),
      "interop_threads": torch.get_num_interop_threads(), "device": device_name,
      "compile": args.compile, "cpu_count": os.cpu_count(),
      "machine": platform.processor() or platform.machine(),
  }))


if __name__ == "__main__":
  main()
