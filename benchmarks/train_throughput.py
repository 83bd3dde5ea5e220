"""Training speed, compile time and memory, measured through the real launcher. Prints ONE JSON.

    python -m benchmarks.train_throughput [--config configs/mnist_vae.py] [--epochs 5]
                                          [--batch_size 128] [--override dtype=bfloat16 ...]
    python -m benchmarks.train_throughput --config configs/mnist_conv.py --epochs 3 [--torch]
    python -m benchmarks.train_throughput --config configs/mnist_beta.py --sweep --epochs 3
    python -m benchmarks.train_throughput --epochs 5 --torch [--torch_device cuda]

`--sweep` trains the config's `get_sweep()` as the launcher's main command does (all members
one vectorised program; the sweep must form one such group). `--override KEY=VALUE`
(repeatable) passes `--config.KEY=VALUE` to both launches. `--torch` then runs
`torch_baseline.py` (the same model in plain PyTorch: configs/mnist_vae.py's MLP VAE or
configs/mnist_conv.py's conv VAE) with the same epochs and batch size, and reports the ratio of
the two steady-state rates.

Data must be prepared already (set VAE_JAX_MANUAL_DIR, or run any launch once): the benchmark
loads it once in-process first, so the launches it times read the .npz cache.

Method. It runs `launch.py` twice as a subprocess, each time with a fresh workdir and
`JAX_LOG_COMPILES=1`, reading the child's stderr line by line with arrival timestamps:

  1. cold: a 1-epoch run with an empty, private JAX compilation cache (JAX_COMPILATION_CACHE_DIR
     points at a new temporary folder), so everything is traced and compiled from scratch;
  2. warm: an `--epochs` run with that same cache folder, now filled by run 1, as a second
     launch of the same command finds it. Which programs run 1 stored is the launcher's
     choice (vae_jax/platform.py caches every program; JAX alone only those compiled in
     more than 1 s); `warm_compile_cache_hits` counts the programs run 2 loaded.

"Launch to first step" is the time from starting the child to the stderr line `Finished XLA
compilation of jit(epoch_fn)`: `trainer.py` calls the compiled epoch directly after that
`.compile()`, so the first training step starts at that moment (within milliseconds: the
progress bar is created in between). JAX logs that line whether the executable was compiled
or loaded from the cache. The same log gives trace/lower/compile seconds of the epoch program.

Steady-state throughput comes from the warm run's `metrics.jsonl`: `trainer.py` times each epoch
as the compiled call plus `device_get` of its metrics (evaluation, checkpoints and logging are
outside that interval), so `train/examples_per_s` per epoch is the training rate; the median
over the epochs is reported, with every epoch's value alongside. For a sweep of M members
that is each member's rate (every member sees the whole split each epoch), and
`examples_per_s` counts the examples of all members: M times that.

Peak memory comes from the warm run's `results.json` (`trainer.memory_stats`): where the device
counts it (`device.memory_stats()["peak_bytes_in_use"]`: GPU, TPU) that is `peak_memory_bytes`;
on CPU, whose device memory is the process's own, it is the training process's peak resident
memory (max RSS, which includes the Python runtime, the host copy of the data and JAX itself).
`peak_memory_source` says which. Alongside, `epoch_program_bytes` is XLA's own account of the
compiled epoch program (arguments + outputs + temporaries - aliased donations), the part of
memory that grows with the model and the batch.

The warm run's last-epoch `train/neg_elbo` and its `test/neg_elbo` show what was trained.
The JSON also holds the model FLOPs per training example (dense layers and convolutions:
forward 2*MACs, backward 4*MACs except the input gradient of the first layer; null for two
stochastic layers), the FLOP rate that implies, and for scale the fp32 rate of one 1024^3 matmul in this process (`matmul_gflops_1024`), plus
jax version, devices, CPU and load average (other jobs on the machine distort every number).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import math
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

COMPILE_DONE = re.compile(r"Finished XLA compilation of jit\(epoch_fn\) in ([0-9.]+) sec")
TRACE_DONE = re.compile(r"Finished tracing \+ transforming epoch_fn for pjit in ([0-9.]+) sec|"
                        r"Finished tracing epoch_fn for jit in ([0-9.]+) sec")
LOWER_DONE = re.compile(r"Finished jaxpr to MLIR module conversion jit\(epoch_fn\) in ([0-9.]+) sec")


def _parse_value(text: str):
  """A command-line override's value as Python: 0.5, (32, 64), True; else the string itself."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _load_config(args):
  """The config the launches train (batch size and overrides applied), and its sweep members'
  (name, config) pairs with --sweep, else [("", config)]."""
  from vae_jax import objectives, sweeps, trainer  # pylint: disable=g-import-not-at-top
  module = sweeps.load_module(str(ROOT / args.config))
  overrides = dict(kv.split("=", 1) for kv in args.override)
  if args.batch_size:
    overrides["batch_size"] = str(args.batch_size)
  config = sweeps.apply_overrides(module.get_config(),
                                  {k: _parse_value(v) for k, v in overrides.items()})
  if not args.sweep:
    return config, [("", config)]
  sweep = sweeps.sweep_of(module)
  if not sweep:
    raise SystemExit(f"error: --sweep but {args.config} defines no get_sweep()")
  members = [(name, c) for name, _, c in sweeps.expand(config, sweep)]
  if len({trainer.group_key(c) for _, c in members}) != 1:
    raise SystemExit(f"error: the sweep of {args.config} is not one vectorised group (its members "
                     "differ in more than " + ", ".join(objectives.vectorised_fields(config)) + ")")
  return config, members


def flops_per_example(config, image_shape) -> float | None:
  """Model FLOPs of one training example (forward + backward) of an AE or a VAE, MLP or conv
  (dense layers and convolutions; elementwise work not counted); None for the other families
  (the two-layer VAE's top MLPs, the VampPrior's pseudo-inputs encoded every step)."""
  from vae_jax import models  # pylint: disable=g-import-not-at-top
  m = config.model
  family = models.family_of(m)
  if family.name not in ("ae", "vae"):
    return None
  d = math.prod(image_shape)
  enc_out = (2 if family.stochastic else 1) * m.latent_dim
  if m.architecture == "mlp":
    enc = [d, *m.hidden_sizes, enc_out]
    dec = [m.latent_dim, *reversed(tuple(m.hidden_sizes)), d]
    conv_macs = []
  else:  # SAME stride-2 convolutions down, transposed back up (vae_jax/models/layers.py)
    sizes = models.conv_shapes(image_shape, m.conv_channels)  # spatial size after each layer
    chans = [image_shape[-1], *m.conv_channels]
    k2 = m.kernel_size ** 2
    # A convolution: k^2 * in * out MACs per output pixel; a transposed one, per input pixel.
    down = [h * w * k2 * a * b for (h, w), a, b in zip(sizes, chans[:-1], chans[1:])]
    up = [h * w * k2 * a * b for (h, w), a, b in zip(reversed(sizes), chans[:0:-1],
                                                      chans[-2::-1])]
    conv_macs = down + up
    flat = sizes[-1][0] * sizes[-1][1] * chans[-1]
    enc = [flat, *m.hidden_sizes, enc_out]
    dec = [m.latent_dim, *reversed(tuple(m.hidden_sizes)), flat]
  macs = [a * b for sizes in (enc, dec) for a, b in zip(sizes[:-1], sizes[1:])]
  first = conv_macs[0] if conv_macs else macs[0]
  total = sum(macs) + sum(conv_macs)
  # forward 2*MAC; backward: weight gradient 2*MAC and input gradient 2*MAC, except that
  # nothing needs the gradient with respect to the images (the first encoder layer).
  return 2 * total + 4 * total - 2 * first


def _launch(args, workdir: pathlib.Path, cache_dir: str, epochs: int, member: str) -> dict:
  # --nosweep: a config that defines a sweep trains as the single run it describes; with
  # --sweep every member trains, into workdir/<member>/ (whose files are read here).
  cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(ROOT / args.config),
         *([] if args.sweep else ["--nosweep"]), "--workdir", str(workdir),
         f"--config.num_epochs={epochs}", f"--config.wandb.mode={args.wandb_mode}",
         *([f"--config.batch_size={args.batch_size}"] if args.batch_size else []),
         *[f"--config.{kv}" for kv in args.override]]
  env = {**os.environ, "JAX_LOG_COMPILES": "1", "JAX_COMPILATION_CACHE_DIR": cache_dir,
         "PYTHONUNBUFFERED": "1"}
  lines: list[tuple[float, str]] = []
  t0 = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, errors="replace")

  def read(stream):
    for line in stream:
      lines.append((time.perf_counter() - t0, line.rstrip("\n")))

  readers = [threading.Thread(target=read, args=(s,)) for s in (proc.stdout, proc.stderr)]
  for r in readers:
    r.start()
  proc.wait()
  total = time.perf_counter() - t0
  for r in readers:
    r.join()
  if proc.returncode != 0:
    tail = "\n".join(l for _, l in lines[-30:])
    raise SystemExit(f"launch.py failed (exit {proc.returncode}):\n{tail}")

  out = {"total_seconds": total, "cache_hits": sum("Persistent compilation cache hit" in l
                                                   for _, l in lines)}
  for t, line in sorted(lines):
    if (m := COMPILE_DONE.search(line)) and "first_step_seconds" not in out:
      out["first_step_seconds"] = t
      out["compile_seconds"] = float(m.group(1))
    elif (m := TRACE_DONE.search(line)) and "trace_seconds" not in out:
      out["trace_seconds"] = float(m.group(1) or m.group(2))
    elif (m := LOWER_DONE.search(line)) and "lower_seconds" not in out:
      out["lower_seconds"] = float(m.group(1))
  if "first_step_seconds" not in out:
    raise SystemExit("no 'Finished XLA compilation of jit(epoch_fn)' line in the launch's log")
  rates = []
  for line in (workdir / member / "metrics.jsonl").read_text().splitlines():
    rec = json.loads(line)
    if "train/examples_per_s" in rec:
      rates.append(rec["train/examples_per_s"])
  out["examples_per_s_per_epoch"] = rates
  out["results"] = json.loads((workdir / member / "results.json").read_text())
  return out


def _memory(results: dict) -> dict:
  """Peak memory fields of the JSON from a run's results.json (see the module docstring)."""
  device_peak = results.get("memory/device_peak_bytes")
  rss = results.get("memory/max_rss_bytes")
  return {
      "peak_memory_bytes": device_peak if device_peak is not None else rss,
      "peak_memory_source": ("device.memory_stats()['peak_bytes_in_use']"
                             if device_peak is not None else "process_max_rss"),
      "epoch_program_bytes": results.get("memory/epoch_program_bytes"),
      "max_rss_bytes": rss,
  }


def torch_model(config) -> str | None:
  """Which model of torch_baseline.py trains what `config` trains: "mlp" (the core MLP VAE of
  configs/mnist_vae.py), "conv" (the conv VAE of configs/mnist_conv.py), or None."""
  from vae_jax import models  # pylint: disable=g-import-not-at-top
  m = config.model
  same_setup = (models.family_name(m) == "vae" and m.latent_dim == 20 and m.activation == "relu"
                and m.likelihood == "bernoulli"
                and config.data.name == "mnist" and config.data.binarization == "dynamic"
                and config.data.corruption == "none" and config.optimizer.name == "adam"
                and config.optimizer.grad_clip_norm == 0 and config.lr_schedule == "constant"
                and config.beta == 1.0 and config.kl_warmup_steps == 0
                and config.free_bits == 0 and config.objective == "elbo"
                and config.num_importance_samples == 1)
  if not same_setup:
    return None
  if m.architecture == "mlp" and tuple(m.hidden_sizes) == (400,):
    return "mlp"
  if (m.architecture == "conv" and tuple(m.conv_channels) == (16, 32) and m.kernel_size == 4
      and tuple(m.hidden_sizes) == (256,)):
    return "conv"
  return None


def _torch(args, config, epochs: int) -> dict:
  """Runs torch_baseline.py with the same epochs, batch size and learning rate; its JSON."""
  from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  device = args.torch_device
  if device == "auto":
    import jax  # pylint: disable=g-import-not-at-top
    device = "cuda" if jax.default_backend() == "gpu" else "cpu"
  train_npz = pathlib.Path(data_lib.resolve_cache_dir(config.data)) / "mnist" / "train.npz"
  cmd = [sys.executable, "-m", "benchmarks.torch_baseline", "--model",
         torch_model(config), "--epochs", str(epochs),
         "--batch_size", str(config.batch_size), "--learning_rate", str(config.learning_rate),
         "--device", device, "--data", str(train_npz), "--seed", str(config.seed),
         *(["--threads", str(args.torch_threads)] if args.torch_threads else []),
         *(["--compile"] if args.torch_compile else [])]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  if proc.returncode != 0:
    raise SystemExit(f"torch_baseline.py failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _matmul_gflops() -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = 1024
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(10):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best / 1e9


def _cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/mnist_vae.py", help="config file, relative to the repo")
  parser.add_argument("--epochs", type=int, default=5, help="epochs of the timed (warm) launch")
  parser.add_argument("--batch_size", type=int, default=None, help="default: the config's")
  parser.add_argument("--sweep", action="store_true",
                      help="train the config's get_sweep() (one vectorised group)")
  parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                      help="passed to both launches as --config.KEY=VALUE (repeatable)")
  parser.add_argument("--wandb_mode", default="offline", help="config.wandb.mode of the launches")
  parser.add_argument("--torch", action="store_true",
                      help="also run benchmarks/torch_baseline.py and report jax / torch")
  parser.add_argument("--torch_device", default="auto",
                      help="cpu, cuda, or auto (cuda when JAX's backend is a GPU)")
  parser.add_argument("--torch_threads", type=int, default=0, help="0: PyTorch's default")
  parser.add_argument("--torch_compile", action="store_true", help="torch.compile the baseline")
  args = parser.parse_args()
  if any("=" not in kv for kv in args.override):
    parser.error("--override takes KEY=VALUE, e.g. --override dtype=bfloat16")

  from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  config, members = _load_config(args)
  if args.torch and args.sweep:
    parser.error("--torch compares single runs of the core config; drop --sweep")
  if args.torch and torch_model(config) is None:
    parser.error("--torch compares the models torch_baseline.py trains: the core MLP VAE of "
                 "configs/mnist_vae.py and the conv VAE of configs/mnist_conv.py, unchanged")
  ds = data_lib.load(config.data)  # prepares the .npz cache if it is missing
  num_train = len(ds.train_images)
  batch_size = config.batch_size
  steps = num_train // batch_size
  num_members = len(members)
  first_member = members[0][0]
  load_before = os.getloadavg()

  with tempfile.TemporaryDirectory(prefix="vae_jax_bench_") as tmp:
    tmp = pathlib.Path(tmp)
    cache = str(tmp / "jax_cache")
    cold = _launch(args, tmp / "cold", cache, epochs=1, member=first_member)
    warm = _launch(args, tmp / "warm", cache, epochs=args.epochs, member=first_member)
    run_info = json.loads((tmp / "warm" / first_member / "config.json").read_text())

  import jax  # pylint: disable=g-import-not-at-top
  rates = warm["examples_per_s_per_epoch"]
  ex_per_s = statistics.median(rates)  # per member
  fpe = flops_per_example(config, ds.image_shape)
  result = {
      "benchmark": "train_throughput",
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "config": args.config,
      "overrides": args.override,
      "dtype": config.dtype,
      "sweep_members": num_members if args.sweep else 0,
      # whose metrics.jsonl / results.json the per-run fields below come from
      "member_read": first_member or None,
      "batch_size": batch_size,
      "steps_per_epoch": steps,
      "epochs": args.epochs,
      "examples_per_s": round(ex_per_s * num_members),
      "examples_per_s_per_member": round(ex_per_s),
      "seconds_per_epoch": round(steps * batch_size / ex_per_s, 3),
      "examples_per_s_per_epoch": [round(r * num_members) for r in rates],
      "compile_seconds": round(cold["compile_seconds"], 2),
      "trace_and_lower_seconds": round(cold.get("trace_seconds", 0) + cold.get("lower_seconds", 0), 2),
      "launch_to_first_step_seconds": round(cold["first_step_seconds"], 2),
      "launch_to_first_step_seconds_warm_compile_cache": round(warm["first_step_seconds"], 2),
      "compile_seconds_warm_compile_cache": round(warm["compile_seconds"], 2),
      "warm_compile_cache_hits": warm["cache_hits"],
      **_memory(warm["results"]),
      "final_epoch_train_neg_elbo": round(warm["results"]["train/neg_elbo"], 3),
      "test_neg_elbo": round(warm["results"]["test/neg_elbo"], 3),
      "flops_per_example": fpe,
      "achieved_gflops": round(fpe * ex_per_s * num_members / 1e9, 1) if fpe else None,
      "matmul_gflops_1024": round(_matmul_gflops(), 1),
      "jax_version": jax.__version__,
      "devices_in_training": run_info.get("devices"),
      "cpu_count": os.cpu_count(),
      "cpu_model": _cpu_model(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }
  if args.torch:
    torch_result = _torch(args, config, args.epochs)
    result["torch"] = torch_result
    result["jax_over_torch_examples_per_s"] = round(ex_per_s / torch_result["examples_per_s"], 3)
  result["loadavg_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
  print(json.dumps(result, allow_nan=False))


if __name__ == "__main__":
  main()
