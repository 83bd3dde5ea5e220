"""The suite's backend is pinned to the CPU (conftest.py), in this process and in the processes
it starts, so it passes the same way on a machine with a GPU."""

import os
import subprocess
import sys

import jax

from tests.helpers import ROOT


def test_the_suite_runs_on_the_cpu_backend():
  assert os.environ["JAX_PLATFORMS"] == "cpu"
  assert jax.default_backend() == "cpu"


def test_processes_the_suite_starts_inherit_the_cpu_backend():
  code = "import jax, os; print(os.environ.get('JAX_PLATFORMS'), jax.default_backend())"
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, check=True).stdout.split()
  assert out == ["cpu", "cpu"]
