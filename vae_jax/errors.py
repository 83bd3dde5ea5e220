"""The one exception type for a user's mistake, and how the commands report one: one line, exit 2."""

from __future__ import annotations

import sys


class UserError(Exception):
  """Bad input (config value, data file, workdir state). The message is one line for the user."""


class PeerFailed(UserError):
  """Another process of a multi-host run failed or stopped answering."""


# Exit statuses of launch.py (the README's Reliability section lists them).
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_PEER_FAILED = 4


def fail(message: str):
  """Prints `error: message` on stderr and exits with status 2 (no traceback)."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def check_tool_arguments(argv, workdir) -> None:
  """The common start of the `python -m vae_jax.<tool> --workdir DIR` commands: no stray
  positional arguments, a workdir given, and absl's INFO chatter silenced."""
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  if not workdir:
    fail("--workdir is required: the folder of a finished run")
