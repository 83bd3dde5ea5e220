"""How the runtime recognises a machine's faults: by exception type and status code first
(each case here), and by message text only in `faults.read_message`, with one test per text
it reads; then the one line `faults.report` makes of each. Fast: no training, no subprocess
(the launches that meet these faults for real are in test_faults.py and
test_contained_faults.py)."""

import errno
import os
import pathlib

import pytest

from tests.helpers import tiny_config
from vae_jax import errors
from vae_jax.runtime import faults, files, signals


# Structured recognition --------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_an_oserror_with_a_disk_full_errno_is_a_full_disk(code):
  assert faults.is_disk_full(OSError(code, os.strerror(code), "/x/y"))
  assert not faults.is_disk_full(OSError(errno.EACCES, os.strerror(errno.EACCES), "/x/y"))


def test_a_full_disk_raised_under_another_exception_is_found_in_its_chain():
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device", "/d/f")
    except OSError as inner:
      raise RuntimeError("writing failed") from inner
  except RuntimeError as outer:
    assert faults.is_disk_full(outer)


def test_memory_error_is_out_of_host_memory():
  assert faults.is_out_of_memory(MemoryError())
  line, status = faults.report(MemoryError())
  assert status == 2 and line.startswith("out of host memory")


def test_xla_out_of_memory_is_recognised_by_its_status_code():
  """A real allocation failure on the CPU backend: RESOURCE_EXHAUSTED (error_code 8)."""
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
          "import jax, jax.numpy as jnp\n"
          "from vae_jax.runtime import faults\n"
          "try:\n"
          "  jax.jit(lambda: jnp.ones((2**32,), jnp.float32))().block_until_ready()\n"
          "except Exception as e:\n"
          "  print(type(e).__name__, e.error_code, faults.is_out_of_memory(e),\n"
          "        faults.requested_bytes(e), faults.is_disk_full(e))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=pathlib.Path(__file__).parent.parent)
  assert out.stdout.split() == ["JaxRuntimeError", "8", "True", str(2**34), "False"], out.stderr


def test_a_lost_peer_needs_more_than_one_process():
  assert not faults.is_peer_failure(RuntimeError("Gloo all-reduce failed: Connection reset"))


def test_disk_full_names_its_path_and_sizes(tmp_path):
  e = files.DiskFull(tmp_path / "cache" / "x.npz", 3 * 2**20)
  assert isinstance(e, OSError) and e.errno == errno.ENOSPC
  assert str(e).startswith(f"disk full while writing {tmp_path / 'cache' / 'x.npz'} (needs 3.0 MiB, ")
  assert "free)" in str(e)


# The one fallback on message text: a test per case ------------------------------------------


@pytest.mark.parametrize("text,code", [
    # TensorStore under Orbax, a checkpoint write on a full disk (jax 0.10, tensorstore 0.1.86)
    ('RESOURCE_EXHAUSTED: Error writing "w0/0.0" in OCDBT database at local file "/d/1.orbax-'
     'checkpoint-tmp/default.orbax-checkpoint-tmp/ocdbt.process_0/": Failed writing: "/d/x": '
     "Failed to write 116177 bytes to file 7: No space left on device [os_error_code='28']", 28),
    # the same over a user's quota
    ("RESOURCE_EXHAUSTED: Failed writing: \"/d/x\": Disk quota exceeded [os_error_code='122']", 122),
    # TensorStore's older form
    ("UNKNOWN: Error writing local file \"/d/x\": Disk quota exceeded [os_error_code=122]", 122),
])
def test_tensorstore_full_disk_text_gives_the_os_error_code(text, code):
  assert faults.read_message(ValueError(text)).os_errno == code
  assert faults.is_disk_full(ValueError(text))


def test_a_tensorstore_error_of_another_kind_is_not_a_full_disk():
  e = ValueError("DATA_LOSS: Error reading \"opt_state.0.count/.zarray\" in OCDBT database "
                 "[os_error_code='5']")
  assert faults.read_message(e).os_errno == 5 and not faults.is_disk_full(e)


@pytest.mark.parametrize("text", [
    # Gloo, when the other process of a 2-process CPU run was killed (error_code UNKNOWN)
    "UNKNOWN: Gloo all-reduce failed: [external/gloo/gloo/transport/tcp/pair.cc:538] Read "
    "error [127.0.0.1]:3497: Connection reset by peer",
    "UNKNOWN: Gloo all-gather failed: [external/gloo/gloo/transport/tcp/pair.cc:589] "
    "Connection closed by peer [127.0.0.1]:41230",
    # NCCL on GPUs
    "INTERNAL: NCCL operation ncclAllReduce(...) failed: unhandled system error",
])
def test_a_collective_transport_that_lost_its_peer_is_read_from_the_text(text):
  assert faults.read_message(RuntimeError(text)).lost_connection


def test_a_collective_error_of_another_kind_is_not_a_lost_peer():
  assert not faults.read_message(RuntimeError("INVALID_ARGUMENT: Gloo: bad shape")).lost_connection


@pytest.mark.parametrize("text,size", [
    ("RESOURCE_EXHAUSTED: Out of memory allocating 17179869184 bytes.", 17179869184),  # XLA CPU
    ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 7.81GiB.", int(7.81 * 2**30)),  # GPU
    ("Unable to allocate 7.45 GiB for an array with shape (1000, 2000000)", int(7.45 * 2**30)),  # numpy
])
def test_the_size_of_a_failed_allocation_is_read_from_the_text(text, size):
  assert faults.read_message(RuntimeError(text)).requested_bytes == size


def test_an_unrelated_message_says_nothing():
  assert faults.read_message(ValueError("shapes do not match")) == faults.MessageSignals()


# The one line ------------------------------------------------------------------------------


def test_one_line_errors_report_their_own_status():
  assert faults.report(errors.UserError("bad")) == ("bad", 2)
  assert faults.report(errors.DivergenceError("nan"))[1] == 3
  assert faults.report(errors.PeerFailed("gone"))[1] == 4
  assert faults.report(signals.Interrupted(15, 3)) == (
      "SIGTERM received: saved a checkpoint at epoch 3; relaunch the same command to resume", 143)
  assert faults.report(KeyboardInterrupt())[1] == 130


def test_a_bug_is_not_reported_so_its_traceback_goes_through():
  assert faults.report(ZeroDivisionError("x")) is None
  assert faults.report(SystemExit(0)) is None


def test_a_fault_in_a_run_names_its_config_fields_and_kept_checkpoint(tmp_path):
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)
  config = tiny_config()
  with pytest.raises(MemoryError) as e:
    with faults.during_run(config, [tmp_path]):
      raise MemoryError("Unable to allocate 2.00 GiB for an array")
  line, status = faults.report(e.value)
  assert status == 2
  assert line == ("out of host memory allocating 2.0 GiB; it grows with batch_size=16, "
                  "eval_batch_size=32, model.hidden_sizes=(32,), model.latent_dim=4: lower "
                  f"these; last good checkpoint: epoch 3 in {tmp_path}/checkpoints (intact)")


def test_a_full_disk_outside_a_run_names_the_path_and_no_checkpoint(tmp_path):
  e = files.DiskFull(tmp_path / "cache" / "released.npz", 100_000)
  line, status = faults.report(e)
  assert status == 2 and line.startswith(f"disk full while writing {tmp_path}/cache/released.npz")
  assert "checkpoint" not in line and "no half-written file is left" in line


def test_an_oserror_outside_the_known_faults_names_its_path():
  line, status = faults.report(PermissionError(errno.EACCES, "Permission denied", "/ro/x"))
  assert (line, status) == ("/ro/x: Permission denied; check that path and relaunch", 2)


# Writing whole files or nothing --------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
  """A 12 KiB tmpfs (root only)."""
  import shutil, subprocess  # pylint: disable=g-import-not-at-top,multiple-imports
  disk = tmp_path / "disk"
  disk.mkdir()
  if os.geteuid() != 0 or not shutil.which("mount") or subprocess.run(
      ["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(disk)],
      capture_output=True).returncode:
    pytest.skip("needs root to mount a small tmpfs")
  yield disk
  subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_an_atomic_write_that_does_not_fit_leaves_the_old_file_and_no_other(tiny_disk):
  path = tiny_disk / "results.json"
  files.write_json(path, {"a": 1})
  with pytest.raises(files.DiskFull) as e:
    files.write_bytes(path, b"x" * 64 * 1024)
  assert e.value.path == path and e.value.needed == 64 * 1024 and e.value.free is not None
  assert str(e.value).startswith(f"disk full while writing {path} (needs 64.0 KiB, ")
  assert sorted(p.name for p in tiny_disk.iterdir()) == ["results.json"]
  assert path.read_text() == '{\n  "a": 1\n}\n'
  assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~files._umask())  # pylint: disable=protected-access


def test_a_line_that_does_not_fit_is_not_appended_in_part(tiny_disk):
  path = tiny_disk / "metrics.jsonl"
  with open(path, "ab", buffering=0) as f:
    files.append_line(f, path, '{"step": 1}')
    with pytest.raises(files.DiskFull) as e:
      files.append_line(f, path, '{"step": 2, "x": "' + "y" * 64 * 1024 + '"}')
  assert e.value.path == path
  assert path.read_text() == '{"step": 1}\n'


def test_a_cache_that_does_not_fit_names_its_size(tiny_disk):
  import numpy as np  # pylint: disable=g-import-not-at-top
  path = tiny_disk / "cache" / "mnist" / "train.npz"
  with pytest.raises(files.DiskFull) as e:
    files.save_npz(path, images=np.zeros((100, 28, 28, 1), np.uint8), labels=np.zeros(100, np.int32))
  assert e.value.needed == 78400 + 400 + 2 * 4096
  assert not [p for p in tiny_disk.rglob("*") if p.is_file()]
