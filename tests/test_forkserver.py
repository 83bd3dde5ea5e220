"""The fork server the end-to-end tests launch through: a forked launch behaves as a new
interpreter running the same command (argv, working directory, environment, streams, exit
status, signals), and starts from the server's import-only state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from tests import forkserver
from tests.helpers import xla_env

_SCRIPT = textwrap.dedent("""\
    import json, os, sys
    import jax
    import vae_jax.trainer as t
    state = getattr(t, "_forkserver_probe", None)
    t._forkserver_probe = "set by a launch"
    print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0],
                      "env": os.environ.get("PROBE"), "devices": len(jax.devices()),
                      "state": state, "main": __name__}))
    print("to stderr", file=sys.stderr)
    if sys.argv[1] == "raise":
      raise ValueError("raised by the script")
    sys.exit(int(sys.argv[1]))
    """)


@pytest.fixture
def script(tmp_path):
  path = tmp_path / "probe.py"
  path.write_text(_SCRIPT)
  return path


@pytest.mark.parametrize("form", ["script", "code"])
@pytest.mark.parametrize("arg", ["0", "3", "raise"])
def test_a_forked_launch_matches_a_new_interpreter(script, tmp_path, arg, form):
  env = {**xla_env(3), "PROBE": "seen"}
  cmd = [sys.executable, *([str(script)] if form == "script" else ["-c", _SCRIPT]), arg]
  forked = forkserver.popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  assert isinstance(forked, forkserver.ForkedProcess)
  out, err = forked.communicate(timeout=120)
  fresh = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert forked.returncode == fresh.returncode == {"0": 0, "3": 3, "raise": 1}[arg]
  assert out == fresh.stdout
  assert err.splitlines()[-1] == fresh.stderr.splitlines()[-1]
  seen = json.loads(out)
  # XLA_FLAGS of the launch applies; module state is the server's import-only state each time.
  assert seen["devices"] == 3 and seen["state"] is None and seen["env"] == "seen"
  assert seen["cwd"] == str(tmp_path) and seen["main"] == "__main__"
  if form == "script":
    assert seen["argv"] == [str(script), arg] and seen["path0"] == str(tmp_path)
  else:
    assert seen["argv"] == ["-c", arg] and seen["path0"] == ""
  if arg == "raise":
    assert "Traceback" in err and "ValueError: raised by the script" in err


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_forked_launch_is_a_process_of_its_own(tmp_path, sig):
  path = tmp_path / "wait.py"
  path.write_text("import sys, time\nprint('up', flush=True)\ntime.sleep(60)\n")
  proc = forkserver.popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline() == "up\n"
  assert proc.poll() is None and proc.pid != os.getpid()
  with pytest.raises(subprocess.TimeoutExpired):
    proc.wait(timeout=0.1)
  os.kill(proc.pid, sig)
  assert proc.wait(timeout=30) == -sig


def test_commands_it_does_not_serve_run_in_new_processes(script):
  other = forkserver.popen([sys.executable, "-V"], stdout=subprocess.DEVNULL)
  assert isinstance(other, subprocess.Popen) and other.wait(timeout=60) == 0
  # An environment JAX reads while importing needs an interpreter of its own.
  env = {**os.environ, "JAX_ENABLE_X64": "1"}
  proc = forkserver.popen([sys.executable, str(script), "0"], env=env, stdout=subprocess.DEVNULL)
  assert isinstance(proc, subprocess.Popen) and proc.wait(timeout=120) == 0


def test_a_connection_that_asks_nothing_leaves_the_server_serving(tmp_path):
  path = tmp_path / "ok.py"
  path.write_text("print('served')\n")
  forkserver.run([sys.executable, str(path)])  # the server is up
  with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
    conn.connect(forkserver._server().path)  # pylint: disable=protected-access
  proc = forkserver.popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
  assert isinstance(proc, forkserver.ForkedProcess)
  assert proc.communicate(timeout=60) == ("served\n", None) and proc.returncode == 0
