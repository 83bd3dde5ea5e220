"""The exceptions that end a command with one line and an exit status, and how the tools
report one.

`OneLineError` carries its exit status; the launcher's one handler
(`runtime.faults.report`) prints its message as `error: ...` and exits with it.
"""

from __future__ import annotations

import sys

# Exit statuses of launch.py (the README's Reliability section lists them); a stop request
# exits with 128 + the signal's number (`runtime.signals.Interrupted`).
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_PEER_FAILED = 4


class OneLineError(Exception):
  """Ends a command: the message is one line for the user, `exit_status` the process's."""
  exit_status = EXIT_USER_ERROR


class UserError(OneLineError):
  """Bad input (config value, data file, workdir state) or a machine's fault named in the line."""


class PeerFailed(UserError):
  """Another process of a multi-host run failed or stopped answering."""
  exit_status = EXIT_PEER_FAILED


class DivergenceError(UserError):
  """Training produced NaN or Inf; the last good checkpoint is kept."""
  exit_status = EXIT_DIVERGED


def fail(message: str):
  """Prints `error: message` on stderr and exits with status 2 (no traceback)."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)


def check_tool_arguments(argv, workdir) -> None:
  """The common start of the `python -m vae_jax.<tool> --workdir DIR` commands: no stray
  positional arguments, a workdir given, and absl's INFO chatter silenced."""
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  if not workdir:
    fail("--workdir is required: the folder of a finished run")
