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

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py); override fields with --config.<key>=<value>.",
    lock_config=True)
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


def _config_arg(argv) -> str | None:
  for i, a in enumerate(argv[1:], 1):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def config_load_error(config_arg: str) -> str | None:
  """Why the config file does not load (naming the file and the line), or None if it does."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import traceback  # pylint: disable=g-import-not-at-top
  path, _, arg = config_arg.partition(":")
  if not os.path.isfile(path):
    return None

  def where(e):
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__)
             if os.path.abspath(f.filename) == os.path.abspath(path)]
    line = lines[-1] if lines else getattr(e, "lineno", None)  # SyntaxError carries its own
    return f"{path}, line {line}" if line else path

  try:
    spec = importlib.util.spec_from_file_location("_vae_jax_config_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  (whatever the file raises)
    return f"{where(e)}: the file does not import: {type(e).__name__}: {_one_line(e)}"
  if not callable(getattr(module, "get_config", None)):
    return (f"{path} defines no get_config(); a config file defines get_config() returning an "
            "ml_collections.ConfigDict")
  try:
    module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    return f"{where(e)}: get_config({repr(arg) if arg else ''}) raised {type(e).__name__}: {_one_line(e)}"
  return None


def _parse_flags(argv):
  """Flag parsing with one clear line (and exit 2) instead of absl's usage dump or a traceback."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except  (absl and ml_collections errors)
    config_arg = _config_arg(argv)
    problem = config_load_error(config_arg) if config_arg else None
    if problem:
      print(f"error: config {problem}", file=sys.stderr)
    else:
      print(f"error: bad command line: {_one_line(e)}", file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    sys.exit(2)
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  if not os.path.isfile(path.split(":")[0]):
    print(f"error: --config={path}: no such file; expected a config file such as "
          "configs/mnist_vae.py", file=sys.stderr)
    sys.exit(2)
  try:
    config = _CONFIG.value
    config.keys()  # config_flags loads lazily: surface a broken file here
  except Exception as e:  # pylint: disable=broad-except  (config file missing or broken)
    problem = config_load_error(path)
    print(f"error: config {problem}" if problem else f"error: could not load --config: "
          f"{_one_line(e)}", file=sys.stderr)
    sys.exit(2)
  from vae_jax import launcher  # pylint: disable=g-import-not-at-top
  launcher.main(
      config=config,
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
