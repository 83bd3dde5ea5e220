"""The commands the tests start, forked from a process that has already imported what they import.

Most of the suite's end-to-end tests start `python launch.py ...` or `python -m
vae_jax.tools.<tool> ...`, and each such process spends about two seconds importing JAX, Flax,
Orbax and matplotlib before it runs a line of the launcher. Here one server process per test
process imports them once; every launch is then a `fork` of it that takes the launch's argv,
working directory, environment and standard streams and runs the script as `__main__`, as
`python` would. The child is a real process: its pid can be signalled or killed, its exit
status and output are what `python launch.py` would give, and each child starts from the
server's import-only state, never from another launch's.

`run` and `popen` take `subprocess.run`'s and `subprocess.Popen`'s arguments and fork
`python script.py`, `python -m vae_jax.<module>` (or `tests.<module>`) and `python -c code`.
They fall back to `subprocess` for other programs and for an environment that changes what is
read while importing (`JAX_*`, `PYTHON*`, thread-count variables): the server imported JAX
under its own environment. XLA reads `XLA_FLAGS` when the backend starts, in the child, so
fake-device counts still apply. What a fork cannot show is a fresh interpreter's imports: a
missing import hidden by one the server made, what a command leaves unimported, per-process
hash seeds. Tests of those call `subprocess` itself, as does test_launch.py's end-to-end run of
the README's command on real MNIST.

    python -m tests.forkserver NAME   # the server; started by `_server()`, ended with its parent
"""

from __future__ import annotations

import json
import os
import pathlib
import select
import socket
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Environment variables read while Python, NumPy or JAX import: a launch that sets them
# differently from the server runs in a fresh process.
_IMPORT_TIME_PREFIXES = ("JAX_", "PYTHON", "OPENBLAS_", "OMP_", "MKL_", "NPY_", "LD_", "MPL")
_MAX_MESSAGE = 1 << 20


# ----------------------------------------------------------------------------- server side


def _preload():
  """Imports what a launch or a tool imports, except the scripts run as `__main__`."""
  import importlib  # pylint: disable=g-import-not-at-top
  import pkgutil  # pylint: disable=g-import-not-at-top

  import vae_jax  # pylint: disable=g-import-not-at-top
  for name in ("absl.app", "ml_collections.config_flags"):
    importlib.import_module(name)
  for info in pkgutil.walk_packages(vae_jax.__path__, "vae_jax."):
    if not info.name.startswith("vae_jax.tools."):
      importlib.import_module(info.name)


def _exit_code(exc: SystemExit) -> int:
  if exc.code is None:
    return 0
  if isinstance(exc.code, int):
    return exc.code
  print(exc.code, file=sys.stderr)
  return 1


def _child(request: dict, fds: list[int]) -> None:
  """In the forked child: become `python script.py args`, `python -m module args` or `python -c
  code args`."""
  import atexit  # pylint: disable=g-import-not-at-top
  import runpy  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  for target, fd in enumerate(fds):
    os.dup2(fd, target)
  for fd in fds:
    if fd > 2:
      os.close(fd)
  os.chdir(request["cwd"])
  os.environ.clear()
  os.environ.update(request["env"])
  sys.argv = list(request["argv"])
  code = 1
  try:
    if request["kind"] == "module":  # python -m module args
      sys.path[0] = request["cwd"]
      runpy.run_module(request["target"], run_name="__main__", alter_sys=True)
    elif request["kind"] == "code":  # python -c code args
      sys.path[0] = ""
      main = types.ModuleType("__main__")
      sys.modules["__main__"] = main
      code_object = compile(request["target"], "<string>", "exec")
      exec(code_object, main.__dict__)  # pylint: disable=exec-used
    else:  # python script.py args
      script = os.path.abspath(request["target"])
      sys.path[0] = os.path.dirname(script)
      runpy.run_path(script, run_name="__main__")
    code = 0
  except SystemExit as e:
    code = _exit_code(e)
  except KeyboardInterrupt:
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as Python does: die of the signal
    os.kill(os.getpid(), signal.SIGINT)
  except BaseException:  # pylint: disable=broad-except
    sys.excepthook(*sys.exc_info())
  finally:
    # What the interpreter does at exit: join non-daemon threads, run atexit, flush.
    try:
      threading._shutdown()  # pylint: disable=protected-access
      atexit._run_exitfuncs()  # pylint: disable=protected-access
      sys.stdout.flush()
      sys.stderr.flush()
    finally:
      os._exit(code)  # pylint: disable=protected-access


def serve(name: str) -> None:
  """Accepts launch requests on the abstract Unix socket `name` until standard input closes."""
  _preload()
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
  listener.bind("\0" + name)
  listener.listen(64)
  print("ready", flush=True)
  children = {}  # pidfd -> (pid, connection)
  while True:
    ready, _, _ = select.select([sys.stdin, listener, *children], [], [])
    if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
      return  # the test process is gone
    if listener in ready:
      conn, _ = listener.accept()
      message, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, 3)
      if not message or len(fds) != 3:  # a test process that went away before asking
        for fd in fds:
          os.close(fd)
        conn.close()
        continue
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        listener.close()
        conn.close()
        for pidfd, (_, other) in children.items():
          os.close(pidfd)
          other.close()
        _child(json.loads(message), fds)
      for fd in fds:
        os.close(fd)
      conn.send(json.dumps({"pid": pid}).encode())
      children[os.pidfd_open(pid)] = (pid, conn)
    for pidfd in [r for r in ready if isinstance(r, int)]:
      pid, conn = children.pop(pidfd)
      _, status = os.waitpid(pid, 0)
      os.close(pidfd)
      try:
        conn.send(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
      except OSError:
        pass  # the test stopped waiting for it
      conn.close()


# ----------------------------------------------------------------------------- client side


class _Server:
  """This test process's server: started on first use, ended when this process exits."""

  def __init__(self):
    self.env = dict(os.environ)
    # An abstract Unix socket (Linux): nothing on disk to clean up.
    name = f"vae_jax_forkserver_{os.getpid()}_{os.urandom(4).hex()}"
    self.path = "\0" + name
    self.proc = subprocess.Popen([sys.executable, "-m", "tests.forkserver", name], cwd=ROOT,
                                 env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = self.proc.stdout.readline()
    if line.strip() != b"ready":
      raise RuntimeError(f"the fork server did not start (exit {self.proc.wait()})")

  def accepts(self, env: dict) -> bool:
    keys = {k for k in (*env, *self.env) if k.startswith(_IMPORT_TIME_PREFIXES)}
    return all(env.get(k) == self.env.get(k) for k in keys) and self.proc.poll() is None


_SERVER: _Server | None = None


def _server() -> _Server | None:
  """This process's server; None where there is none to be had (not Linux: no pidfds or
  abstract sockets), and every command then runs in a new process."""
  global _SERVER
  if _SERVER is None and sys.platform == "linux" and hasattr(os, "pidfd_open"):
    _SERVER = _Server()
  return _SERVER


def _target(cmd) -> tuple[str, str, list[str]] | None:
  """(kind, target, sys.argv) for `python script.py args` ("script"), `python -m vae_jax.<module>
  args` ("module") or `python -c code args` ("code"); None for any other command."""
  cmd = [str(c) for c in cmd]
  if len(cmd) < 2 or cmd[0] != sys.executable:
    return None
  if cmd[1] == "-m" and len(cmd) > 2 and cmd[2].startswith(("vae_jax.", "tests.")):
    return "module", cmd[2], [cmd[2], *cmd[3:]]
  if cmd[1] == "-c" and len(cmd) > 2:
    return "code", cmd[2], ["-c", *cmd[3:]]
  if cmd[1].endswith(".py"):
    return "script", cmd[1], cmd[1:]
  return None


class ForkedProcess:
  """The part of `subprocess.Popen`'s interface the tests use, for a forked launch."""

  def __init__(self, cmd, kind, target, argv, *, cwd, env, stdin, stdout, stderr, text):
    self.args = cmd
    self.returncode = None
    self._readers = None
    sent = []  # the child's ends, closed here once sent

    self.stdin = None  # standard input is inherited or /dev/null (`popen` forks no other)
    self.stdout = self.stderr = None
    for number, spec in enumerate((stdin, stdout, stderr)):
      if spec is None:
        sent.append(os.dup(number))
      elif spec == subprocess.DEVNULL:
        sent.append(os.open(os.devnull, os.O_RDWR))
      elif spec == subprocess.STDOUT:
        sent.append(os.dup(sent[1]))
      elif spec == subprocess.PIPE:
        read, write = os.pipe()
        sent.append(write)
        pipe = open(read, "r" if text else "rb")  # pylint: disable=unspecified-encoding
        setattr(self, ("stdout", "stderr")[number - 1], pipe)
      else:
        sent.append(os.dup(spec if isinstance(spec, int) else spec.fileno()))
    request = {"kind": kind, "target": target, "argv": argv, "cwd": str(cwd or os.getcwd()),
               "env": env}
    self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
      self._conn.connect(_server().path)
      socket.send_fds(self._conn, [json.dumps(request).encode()], sent)
    finally:
      for fd in sent:
        os.close(fd)
    self.pid = json.loads(self._conn.recv(_MAX_MESSAGE))["pid"]

  def _receive(self, timeout):
    if self.returncode is None:
      self._conn.settimeout(timeout)
      try:
        message = self._conn.recv(_MAX_MESSAGE)
      except (socket.timeout, BlockingIOError):
        return None
      self.returncode = json.loads(message)["returncode"]
      self._conn.close()
    return self.returncode

  def poll(self):
    return self._receive(0.0)

  def wait(self, timeout=None):
    if self._receive(timeout) is None:
      raise subprocess.TimeoutExpired(self.args, timeout)
    return self.returncode

  def send_signal(self, sig):
    if self.poll() is None:
      os.kill(self.pid, sig)

  def terminate(self):
    self.send_signal(15)

  def kill(self):
    self.send_signal(9)

  def communicate(self, input=None, timeout=None):  # pylint: disable=redefined-builtin
    """Reads stdout and stderr to their ends, then waits; as Popen.communicate (which may be
    called again after a timeout)."""
    if input is not None:
      raise NotImplementedError("forked launches take no standard input")
    if self._readers is None:
      self._output = {}
      def read(f):
        data = f.read()
        f.close()
        self._output[f] = data  # text mode translates newlines, as Popen's text mode
      self._readers = [threading.Thread(target=read, args=(f,), daemon=True)
                       for f in (self.stdout, self.stderr) if f is not None]
      for t in self._readers:
        t.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    for t in self._readers:
      t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
      if t.is_alive():
        raise subprocess.TimeoutExpired(self.args, timeout)
    self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return tuple(None if f is None else self._output[f] for f in (self.stdout, self.stderr))

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for f in (self.stdout, self.stderr):
      if f is not None and not f.closed:
        f.close()
    self.wait()


def popen(cmd, *, cwd=None, env=None, stdin=None, stdout=None, stderr=None, text=False,
          **kwargs):
  """`subprocess.Popen(cmd, ...)`, forked from the server when `cmd` is a launch or a tool."""
  env = dict(os.environ if env is None else env)
  target = _target(cmd)
  piped_input = stdin not in (None, subprocess.DEVNULL)
  if target is None or kwargs or piped_input or _server() is None or not _server().accepts(env):
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            text=text, **kwargs)
  return ForkedProcess(cmd, *target, cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                       stderr=stderr, text=text)


def run(cmd, *, cwd=None, env=None, capture_output=False, text=False, timeout=None,
        stdout=None, stderr=None, check=False):
  """`subprocess.run(cmd, ...)`, forked from the server when `cmd` is a launch or a tool."""
  if capture_output:
    stdout = stderr = subprocess.PIPE
  proc = popen(cmd, cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=text)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    raise
  done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
  if check:
    done.check_returncode()
  return done


if __name__ == "__main__":
  serve(sys.argv[1])
