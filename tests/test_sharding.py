"""Data parallelism: the step on 4 (fake) CPU devices equals the step on 1 device, for the ELBO
and for the objectives whose loss uses batch statistics (β-TCVAE's aggregate posterior,
DIP-VAE's covariance), which are the global batch's on any number of devices."""

import sys

import numpy as np
import pytest

from tests import forkserver
from tests.helpers import ROOT, xla_env


_OBJECTIVES = "elbo,beta_tcvae,dip_vae_ii"


def _run(tmp_path, devices, members=1):
  out = tmp_path / f"d{devices}_m{members}.npz"
  env = xla_env(devices)
  proc = forkserver.run([sys.executable, "-m", "tests.device_run", str(out),
                         str(tmp_path / f"wd{devices}_{members}"), str(members), _OBJECTIVES],
                        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return dict(np.load(out))


@pytest.mark.slow
def test_four_devices_match_one_device(tmp_path):
  one = _run(tmp_path, 1)
  four = _run(tmp_path, 4)
  assert int(one["devices"]) == 1 and int(four["devices"]) == 4
  assert one.keys() == four.keys()
  assert {k.split("_m")[0] for k in one if k != "devices"} == set(_OBJECTIVES.split(","))
  for k in sorted(set(one) - {"devices"}):
    # Same global batch, same noise (drawn for the global batch, then sharded); only the order
    # of the gradient sum differs across devices.
    np.testing.assert_allclose(one[k], four[k], rtol=2e-4, atol=2e-5, err_msg=k)
