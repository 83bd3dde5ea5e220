"""The whole benchmark suite in one command, within a time budget, on whatever backend JAX finds.

    VAE_JAX_MANUAL_DIR=/path/to/data python -m benchmarks.suite [--budget_s 3600] [--only NAME ...]

Runs each benchmark of this folder as its own process (so each gets a fresh JAX and its own
compilation), one after another, and prints one JSON line per benchmark as it finishes: the
benchmark's own JSON plus "suite_name" and "suite_seconds", or {"suite_name", "skipped": why}
when it cannot run here (PyTorch missing, the budget spent), or {"suite_name", "error": ...}
when it failed. Sizes follow the backend: on a CPU the IWAE pass covers 1,000 test images
(its JSON scales the time to 10,000); on an accelerator the whole test set.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def _backend() -> str:
  out = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                       capture_output=True, text=True, check=False)
  return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else "cpu"


def benchmarks(backend: str, torch: bool):
  """(name, command, rough seconds on the 2-core CPU) of each benchmark, in the order run."""
  cpu = backend == "cpu"
  with_torch = ["--torch"] if torch else []
  return [
      ("core_mlp_float32", ["train_throughput.py", "--epochs", "3", *with_torch], 150),
      ("core_mlp_bfloat16", ["train_throughput.py", "--epochs", "3", "--override",
                             "dtype=bfloat16"], 150),
      ("conv", ["train_throughput.py", "--config", "configs/mnist_conv.py", "--epochs", "3",
                *with_torch], 300),
      ("sweep_8_members_vs_1", ["sweep_vectorised.py", "--epochs", "1", "--members", "8"], 600),
      ("iwae_k5000_test_set", ["iwae_eval.py", "--k", "5000", "--mnist",
                               "--num_images", "1000" if cpu else "10000"], 400),
  ]


def _module(script: str) -> str:
  return f"benchmarks.{script.removesuffix('.py')}"


def _last_json(text: str):
  """The last JSON object printed (one line, or indented over several)."""
  lines = text.strip().splitlines()
  for i in range(len(lines) - 1, -1, -1):
    if lines[i].startswith("{"):
      try:
        return json.loads("\n".join(lines[i:]))
      except ValueError:
        continue
  return None


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--budget_s", type=float, default=3600,
                      help="stop starting benchmarks once this much time is spent")
  parser.add_argument("--only", nargs="*", default=None, help="run only these (by suite name)")
  args = parser.parse_args()
  if not os.environ.get("VAE_JAX_MANUAL_DIR"):
    print(json.dumps({"suite": "error", "error": "set VAE_JAX_MANUAL_DIR to the folder holding "
                      "the MNIST raw files (the benchmarks train on real MNIST)"}))
    sys.exit(2)
  torch = importlib.util.find_spec("torch") is not None
  backend = _backend()
  todo = benchmarks(backend, torch)
  known = {n for n, _, _ in todo}
  if args.only and not set(args.only) <= known:
    parser.error(f"unknown benchmark(s) {sorted(set(args.only) - known)}; known: {sorted(known)}")
  print(json.dumps({"suite": "start", "backend": backend, "torch": torch,
                    "budget_s": args.budget_s}), flush=True)
  if not torch:
    print(json.dumps({"suite_name": "torch_baselines", "skipped": "PyTorch is not installed "
                      "(pip install -e \".[bench]\"; the MLP and conv baselines then run in "
                      "core_mlp_float32 and conv)"}), flush=True)
  t_start = time.perf_counter()
  for name, cmd, rough in todo:
    if args.only and name not in args.only:
      continue
    left = args.budget_s - (time.perf_counter() - t_start)
    if left < 30:
      print(json.dumps({"suite_name": name, "skipped": f"budget of {args.budget_s:.0f} s spent"}),
            flush=True)
      continue
    t0 = time.perf_counter()
    # Its own process group: a benchmark stopped at the budget takes its launches with it.
    proc = subprocess.Popen([sys.executable, "-m", _module(cmd[0]), *cmd[1:]], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
      proc.stdout_text, proc.stderr_text = proc.communicate(timeout=left)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.communicate()
      print(json.dumps({"suite_name": name, "skipped": f"stopped at the budget after {left:.0f} s "
                        f"(about {rough} s on the 2-core CPU)"}), flush=True)
      continue
    except BaseException:
      os.killpg(proc.pid, signal.SIGKILL)
      raise
    seconds = round(time.perf_counter() - t0, 1)
    result = _last_json(proc.stdout_text)
    if proc.returncode != 0 or result is None:
      tail = " ".join((proc.stderr_text or proc.stdout_text).strip().splitlines()[-1:])[:300]
      print(json.dumps({"suite_name": name, "error": f"exit {proc.returncode}: {tail}",
                        "command": " ".join(["python", "-m", _module(cmd[0]), *cmd[1:]])}),
            flush=True)
      continue
    print(json.dumps({"suite_name": name, "suite_seconds": seconds,
                      "command": " ".join(["python", "-m", _module(cmd[0]), *cmd[1:]]),
                      **result}), flush=True)


if __name__ == "__main__":
  main()
