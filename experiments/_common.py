"""Helpers shared by the experiment scripts: train a config's sweep through the launcher, find
its finished members, write the result tables.

An experiment is a sweep defined in a config file (trained by `launch.py`, which skips
finished members) plus an analysis of the finished workdirs. Training choices live in the
config and reach the launcher as `--config.KEY=VALUE` arguments (passed through untouched)
or `--member=NAME`; the analysis reads what each run was actually trained with from its
saved config, so it never needs those arguments itself.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pathlib
import subprocess
import sys
from typing import Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent


def parser(description: str, default_workdir: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      description=description,
      epilog="Other arguments of the form --config.KEY=VALUE go to launch.py untouched "
             "(e.g. --config.num_epochs=1 for a quick look).")
  p.add_argument("--workdir", default=default_workdir,
                 help="the sweep's folder: trained into when unfinished, reused when finished")
  p.add_argument("--out", default=None, help="where the figures go (default WORKDIR/figures)")
  p.add_argument("--no_train", action="store_true",
                 help="only analyse what WORKDIR already holds")
  p.add_argument("--member", action="append", default=[],
                 help="train only this member of the config's sweep (repeatable); the "
                      "analysis still covers every finished member in WORKDIR")
  return p


def parse(p: argparse.ArgumentParser):
  args, extra = p.parse_known_args()
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    p.error(f"unrecognised arguments: {' '.join(bad)}")
  args.overrides = extra
  if args.no_train and (extra or args.member):
    # The analysis reads each run's saved config, so these would change nothing.
    print(f"note: --no_train: ignoring {' '.join(extra + [f'--member={m}' for m in args.member])}",
          file=sys.stderr)
  args.workdir = str(pathlib.Path(args.workdir).resolve())
  args.out = pathlib.Path(args.out or pathlib.Path(args.workdir) / "figures")
  return args


def launch(config: str, workdir: str, overrides: Sequence[str],
           members: Sequence[str] = ()) -> None:
  """Runs `python launch.py --config CONFIG --workdir WORKDIR [overrides]` once, or once per
  member with `--member=NAME` (the launcher takes one); finished members are skipped by the
  launcher. Exits with the launcher's status if it fails."""
  for member in (members or [None]):
    cmd = [sys.executable, str(ROOT / "launch.py"), f"--config={ROOT / config}",
           f"--workdir={workdir}", *([f"--member={member}"] if member else []), *overrides]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), check=False).returncode
    if rc:
      sys.exit(rc)


def fail(msg: str) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def finished_runs(workdir: str) -> list[tuple[pathlib.Path, object]]:
  """(run folder, saved config) of every finished run in WORKDIR or its direct subfolders,
  sorted by path. Mentions the unfinished ones on stderr; fails if none is finished."""
  from vae_jax import workdir as wd  # pylint: disable=g-import-not-at-top  (JAX, Flax: slow)
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    runs = wd.find_runs(workdir)
  except UserError as e:
    fail(str(e))
  done = [(p, c) for p, c in runs if wd.is_finished(p, c)]
  for p, c in runs:
    if not wd.is_finished(p, c):
      epochs = (wd.read_results(p) or {}).get("epochs", 0)
      print(f"skipped {p}: not finished ({epochs} of {c.num_epochs} epochs)", file=sys.stderr)
  if not done:
    fail(f"{workdir} holds no finished run"
         + (f" ({len(runs)} unfinished)" if runs else "") + "; run without --no_train")
  return done


def load_data(data_config, cache: dict, **changes):
  """`vae_jax.data.load` of a run's saved data config with `changes` applied, loaded once per
  distinct result (several runs usually share one dataset)."""
  from vae_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  c = data_config.copy_and_resolve_references()
  for k, v in changes.items():
    c[k] = v
  key = json.dumps(c.to_dict(), sort_keys=True, default=str)
  if key not in cache:
    cache[key] = data_lib.load(c)
  return cache[key]


def load_model(path, dataset):
  """The trained model of a finished run (its dataset only fixes the input shape)."""
  from vae_jax import workdir as wd  # pylint: disable=g-import-not-at-top
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    return wd.load_run(path, dataset=dataset)[1]
  except UserError as e:
    fail(str(e))


def epochs_of(configs) -> str:
  """'5 epochs', or 'epochs 1, 5' when the runs differ."""
  epochs = sorted({int(c.num_epochs) for c in configs})
  if len(epochs) == 1:
    return f"{epochs[0]} epoch{'' if epochs[0] == 1 else 's'}"
  return f"epochs {', '.join(map(str, epochs))}"


def write_table(out: pathlib.Path, stem: str, header: Sequence[str], rows: Sequence[Sequence],
                title: str, notes: str = "") -> tuple[pathlib.Path, pathlib.Path]:
  """Writes OUT/STEM.csv and OUT/STEM.md (a markdown table under a title and notes), each
  whole or not at all (`vae_jax.runtime.files`)."""
  from vae_jax.runtime import files  # pylint: disable=g-import-not-at-top
  out.mkdir(parents=True, exist_ok=True)
  csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
  table = io.StringIO(newline="")
  w = csv.writer(table)
  w.writerow(header)
  w.writerows(rows)
  files.write_text(csv_path, table.getvalue())
  fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
  lines = [f"# {title}", "", notes, ""] if notes else [f"# {title}", ""]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  files.write_text(md_path, "\n".join(lines) + "\n")
  return csv_path, md_path
