"""Helpers shared by the experiment scripts: run the launcher, parse pass-through overrides."""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def parser(description: str, default_workdir: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      description=description,
      epilog="Other arguments of the form --config.KEY=VALUE go to launch.py "
             "(e.g. --config.num_epochs=5 for a quick look).")
  p.add_argument("--workdir", default=default_workdir,
                 help="the sweep's folder: trained into when unfinished, reused when finished")
  p.add_argument("--out", default=None, help="where the figures go (default WORKDIR/figures)")
  p.add_argument("--no_train", action="store_true",
                 help="only draw figures from what WORKDIR already holds")
  return p


def parse(p: argparse.ArgumentParser):
  args, extra = p.parse_known_args()
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    p.error(f"unrecognised arguments: {' '.join(bad)}")
  args.overrides = extra
  args.workdir = str(pathlib.Path(args.workdir).resolve())
  args.out = pathlib.Path(args.out or pathlib.Path(args.workdir) / "figures")
  return args


def launch(config: str, workdir: str, overrides: list[str]) -> None:
  """Runs `python launch.py --config CONFIG --workdir WORKDIR [overrides]` (finished members
  are skipped by the launcher); exits with its status if it fails."""
  cmd = [sys.executable, str(ROOT / "launch.py"), f"--config={ROOT / config}",
         f"--workdir={workdir}", *overrides]
  print("+", " ".join(cmd), flush=True)
  rc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), check=False).returncode
  if rc:
    sys.exit(rc)


def fail(msg: str) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)
