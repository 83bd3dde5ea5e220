"""Training throughput of the core step, measured through the real launcher. Prints ONE JSON object.

    python benchmarks/train_throughput.py [--config configs/mnist_vae.py] [--epochs 5]
                                          [--batch_size 128]

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
compilation of jit(epoch_fn)`: `train.py` calls the compiled epoch directly after that
`.compile()`, so the first training step starts at that moment (within milliseconds: the
progress bar is created in between). JAX logs that line whether the executable was compiled
or loaded from the cache. The same log gives trace/lower/compile seconds of the epoch program.

Steady-state throughput comes from the warm run's `metrics.jsonl`: `train.py` times each epoch
as the compiled call plus `device_get` of its metrics (evaluation, checkpoints and logging are
outside that interval), so `train/examples_per_s` per epoch is the training rate; the median
over the epochs is reported, with every epoch's value alongside.

The JSON also holds the model FLOPs per training example (dense layers: forward 2*MACs,
backward 4*MACs except the input gradient of the first layer), the FLOP rate that implies,
and for scale the fp32 rate of one 1024^3 matmul in this process (`matmul_gflops_1024`), plus
jax version, devices, CPU and load average (other jobs on the machine distort every number).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
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
sys.path.insert(0, str(ROOT))

COMPILE_DONE = re.compile(r"Finished XLA compilation of jit\(epoch_fn\) in ([0-9.]+) sec")
TRACE_DONE = re.compile(r"Finished tracing \+ transforming epoch_fn for pjit in ([0-9.]+) sec|"
                        r"Finished tracing epoch_fn for jit in ([0-9.]+) sec")
LOWER_DONE = re.compile(r"Finished jaxpr to MLIR module conversion jit\(epoch_fn\) in ([0-9.]+) sec")


def _load_config(path: str, batch_size: int):
  spec = importlib.util.spec_from_file_location("bench_config", ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.batch_size = batch_size
  return config


def flops_per_example(config, image_shape) -> float:
  """Dense-layer FLOPs of one training example (forward + backward) of an MLP AE/VAE."""
  m = config.model
  if m.architecture != "mlp":
    return float("nan")
  d = math.prod(image_shape)
  enc = [d, *m.hidden_sizes, (2 if m.name == "vae" else 1) * m.latent_dim]
  dec = [m.latent_dim, *reversed(tuple(m.hidden_sizes)), d]
  macs = [a * b for sizes in (enc, dec) for a, b in zip(sizes[:-1], sizes[1:])]
  # forward 2*MAC; backward: weight gradient 2*MAC and input gradient 2*MAC, except that
  # nothing needs the gradient with respect to the images (first encoder layer).
  return 2 * sum(macs) + 4 * sum(macs) - 2 * macs[0]


def _launch(args, workdir: pathlib.Path, cache_dir: str, epochs: int) -> dict:
  # --nosweep: a config that defines a sweep trains as the single run it describes.
  cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(ROOT / args.config), "--nosweep",
         "--workdir", str(workdir), f"--config.num_epochs={epochs}",
         f"--config.batch_size={args.batch_size}", f"--config.wandb.mode={args.wandb_mode}"]
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
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    rec = json.loads(line)
    if "train/examples_per_s" in rec:
      rates.append(rec["train/examples_per_s"])
  out["examples_per_s_per_epoch"] = rates
  return out


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
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--wandb_mode", default="offline", help="config.wandb.mode of the launches")
  args = parser.parse_args()

  from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  config = _load_config(args.config, args.batch_size)
  ds = data_lib.load(config.data)  # prepares the .npz cache if it is missing
  num_train = len(ds.train_images)
  steps = num_train // args.batch_size
  load_before = os.getloadavg()

  with tempfile.TemporaryDirectory(prefix="vae_jax_bench_") as tmp:
    tmp = pathlib.Path(tmp)
    cache = str(tmp / "jax_cache")
    cold = _launch(args, tmp / "cold", cache, epochs=1)
    warm = _launch(args, tmp / "warm", cache, epochs=args.epochs)
    run_info = json.loads((tmp / "warm" / "config.json").read_text())

  import jax  # pylint: disable=g-import-not-at-top
  rates = warm["examples_per_s_per_epoch"]
  ex_per_s = statistics.median(rates)
  fpe = flops_per_example(config, ds.image_shape)
  result = {
      "benchmark": "train_throughput",
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "config": args.config,
      "batch_size": args.batch_size,
      "steps_per_epoch": steps,
      "examples_per_s": round(ex_per_s),
      "seconds_per_epoch": round(steps * args.batch_size / ex_per_s, 3),
      "examples_per_s_per_epoch": [round(r) for r in rates],
      "compile_seconds": round(cold["compile_seconds"], 2),
      "trace_and_lower_seconds": round(cold.get("trace_seconds", 0) + cold.get("lower_seconds", 0), 2),
      "launch_to_first_step_seconds": round(cold["first_step_seconds"], 2),
      "launch_to_first_step_seconds_warm_compile_cache": round(warm["first_step_seconds"], 2),
      "compile_seconds_warm_compile_cache": round(warm["compile_seconds"], 2),
      "warm_compile_cache_hits": warm["cache_hits"],
      "flops_per_example": fpe,
      "achieved_gflops": round(fpe * ex_per_s / 1e9, 1),
      "matmul_gflops_1024": round(_matmul_gflops(), 1),
      "jax_version": jax.__version__,
      "devices_in_training": run_info.get("devices"),
      "cpu_count": os.cpu_count(),
      "cpu_model": _cpu_model(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
