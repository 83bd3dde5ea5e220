"""Launcher: flags only. Everything else lives in `vae_jax` (see vae_jax/launcher.py).

    python launch.py --config configs/mnist_vae.py --workdir runs/vae [--config.beta=4 ...]

Multi-host: pass --coordinator_address, --num_processes and --process_id on every host, or
--distributed to let `jax.distributed.initialize()` read them from the cluster (SLURM, TPU pods).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow only prepares data; keep it quiet.

from absl import app, flags  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top


class _ConfigFileParser(flags.ArgumentParser):
  """--config's value: the file loaded by `vae_jax.config.load_file` (the one loader of config
  files, whose failures are one line naming the file) and locked, as config_flags' own parser
  locks it; config_flags then applies the --config.<key>=<value> overrides to it."""

  def parse(self, argument):
    from vae_jax import config as config_lib  # pylint: disable=g-import-not-at-top
    config = config_lib.load_file(argument).config
    config.lock()
    return config

  def flag_type(self):
    return "config object"


_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py); override fields with --config.<key>=<value>.",
    lock_config=True)
flags.FLAGS["config"].parser = _ConfigFileParser()  # config_flags' flag, our loader
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; default runs/<config file name>.")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a workdir even though its saved config differs.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with settings from the environment.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
_MEMBER = flags.DEFINE_string("member", None, "Run only this member of the config's sweep.")
_SWEEP = flags.DEFINE_bool("sweep", True, "Run the config's sweep (get_sweep); --nosweep runs "
                           "the config alone.")
_MEMBER_SUBDIR = flags.DEFINE_bool(
    "member_subdir", False, "Write into --workdir/<member name> (used by W&B sweep agents).")
_EXPORT = flags.DEFINE_string("export_wandb_sweep", None,
                              "Write the config's sweep as a W&B sweep file here and exit.")
flags.mark_flags_as_required(["config"])


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).replace("\\n", " ").split())


def _renamed_override(argv) -> str | None:
  """A --config.<old name>=... override of a field renamed since (`workdir.RENAMED_FIELDS`):
  the line that names its new name."""
  from vae_jax import workdir  # pylint: disable=g-import-not-at-top
  for a in argv[1:]:
    key = a.split("=", 1)[0].removeprefix("--").removeprefix("no")
    if key.startswith("config.") and key[len("config."):] in workdir.RENAMED_FIELDS:
      old = key[len("config."):]
      return (f"--config.{old} is not a config field: it is now "
              f"--config.{workdir.RENAMED_FIELDS[old]}")
  return None


def _parse_flags(argv):
  """Flag parsing with one clear line (and exit 2) instead of absl's usage dump or a traceback."""
  try:
    return flags.FLAGS(argv)
  except UserError as e:  # the config file does not load (`vae_jax.config.load_file`)
    print(f"error: {e}", file=sys.stderr)
  except Exception as e:  # pylint: disable=broad-except  (absl and ml_collections errors)
    line = _renamed_override(argv) or f"bad command line: {_one_line(e)}"
    print(f"error: {line}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    sys.exit(2)
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  from vae_jax import launcher  # pylint: disable=g-import-not-at-top
  launcher.main(
      config=_CONFIG.value,
      config_path=path,
      workdir=_WORKDIR.value,
      allow_config_change=_ALLOW_CHANGE.value,
      distributed=_DISTRIBUTED.value,
      coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value,
      process_id=_PROCESS_ID.value,
      overrides=dict(config_flags.get_override_values(flags.FLAGS["config"])),
      member=_MEMBER.value,
      use_sweep=_SWEEP.value,
      member_subdir=_MEMBER_SUBDIR.value,
      export_wandb_sweep=_EXPORT.value)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
