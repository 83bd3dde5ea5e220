"""Derived files repair themselves: a cache the program can rebuild from its sources that
fails its check is moved aside (kept in <its folder>/damaged/, byte for byte), rebuilt, and
named in one warning line; the run goes on. Sources the program cannot rebuild (the user's raw
files) stop the run with one line. Through launch.py in a subprocess, as a user runs it, for
the dSprites cache, prepared TFDS splits, TFDS's own prepared copy and the compilation cache;
in-process for the folder:/npz: caches and the race between two launches.

What "fails its check" means, per cache:
  * a prepared split (.npz): it does not load (truncated, foreign, a flipped byte: zip's CRC),
    or its arrays are not a split (uint8 images (N, H, W, C), integer labels per image);
  * the dSprites caches: the same, for packed rows (N, 512) and factor indices in the grid;
  * TFDS's prepared copy: its dataset_info.json does not parse, or a shard does not read;
  * a compiled program in JAX's persistent cache: it does not decompress.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests import forkserver
from tests.helpers import ROOT, TINY_CONFIG_FILE, launch, write_fake_cache, write_fake_dsprites
from vae_jax.data import cache, dsprites
from vae_jax.errors import UserError
from vae_jax.runtime import files

# Tracebacks, Python warnings and library log lines ("W1205 09:15:27.2 ...").
_NOISE = re.compile(r"Traceback|Warning:|warnings\.warn|^[EWF]\d{4} |^(ERROR|WARNING):")


def _lines(proc) -> list[str]:
  text = (proc.stdout + "\n" + proc.stderr).replace("\r", "\n")
  return [l for l in text.splitlines() if l.strip() and not re.search(r"\d+%\|", l)]


def _one_warning(proc, path: pathlib.Path, rebuild: str) -> pathlib.Path:
  """Exit 0, exactly one `warning:` line naming `path`, where it went and `rebuild`, and no
  traceback or library noise; returns where the damaged file went."""
  assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
  lines = _lines(proc)
  warnings = [l for l in lines if l.startswith("warning:")]
  assert len(warnings) == 1, lines
  assert not [l for l in lines if _NOISE.search(l)], lines
  m = re.fullmatch(rf"warning: {re.escape(str(path))} (.+); moved it to (\S+); (.+)", warnings[0])
  assert m and rebuild in m.group(3), warnings[0]
  dest = pathlib.Path(m.group(2))
  assert dest.parent == path.parent / "damaged" and dest.name.startswith(path.name + ".")
  return dest


def _no_warning(proc):
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not [l for l in _lines(proc) if l.startswith("warning:") or _NOISE.search(l)]


def _no_temporary_files(root: pathlib.Path):
  assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _flip_a_byte(path: pathlib.Path, at: float = 0.5) -> bytes:
  data = bytearray(path.read_bytes())
  data[int(len(data) * at)] ^= 0xFF
  path.write_bytes(bytes(data))
  return bytes(data)


def _results(workdir) -> dict:
  import json  # pylint: disable=g-import-not-at-top
  r = json.loads((pathlib.Path(workdir) / "results.json").read_text())
  return {k: v for k, v in r.items() if k.startswith("test/")}


# dSprites: the cache of the released file, through launch.py ----------------------------------


@pytest.mark.slow
def test_a_damaged_dsprites_cache_is_moved_aside_and_read_again(tmp_path):
  manual = tmp_path / "manual"
  write_fake_dsprites(manual)  # 192 images, in the released file's format
  cache_dir = tmp_path / "cache"
  args = ["--config", str(ROOT / "configs" / "dsprites_vae.py"), "--config.num_epochs=1",
          "--config.batch_size=32", "--config.model.hidden_sizes=(16,)",
          "--config.wandb.mode=disabled", "--config.eval_disentanglement=False",
          "--config.write_figures=False", f"--config.data.manual_dir={manual}",
          f"--config.data.cache_dir={cache_dir}"]
  first = launch([*args, "--workdir", str(tmp_path / "a")])
  assert first.returncode == 0, first.stderr[-3000:]
  path = cache_dir / "dsprites" / "released.npz"
  good = path.read_bytes()

  # Three kinds of damage: a flipped byte, a truncated file, arrays of the wrong shape.
  wrong = tmp_path / "wrong.npz"
  np.savez(wrong, packed=np.zeros((4, 7), np.uint8), factors=np.zeros((4, 5), np.int32),
           renderer_version=np.int64(0))
  for n, damaged in enumerate([None, good[:len(good) // 3], wrong.read_bytes()]):
    if damaged is None:
      damaged = _flip_a_byte(path)
    else:
      path.write_bytes(damaged)
    proc = launch([*args, "--workdir", str(tmp_path / f"run{n}")])
    dest = _one_warning(proc, path, f"reading {manual / dsprites.RELEASED_FILENAME} again")
    assert dest.read_bytes() == damaged  # kept as it was, for inspection
    assert path.read_bytes() == good  # rebuilt from the released file, the same cache
    assert _results(tmp_path / f"run{n}") == _results(tmp_path / "a")  # the same run
  assert len(list((cache_dir / "dsprites" / "damaged").glob("released.npz.*"))) == 3
  _no_temporary_files(cache_dir)
  _no_warning(launch([*args, "--workdir", str(tmp_path / "again")]))  # repaired for good

  # The user's own file is a source: damaged, it stops the run with one line, nothing moved.
  raw = manual / dsprites.RELEASED_FILENAME
  raw.write_bytes(raw.read_bytes()[:1000])
  path.unlink()
  proc = launch([*args, "--workdir", str(tmp_path / "b")])
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [l for l in _lines(proc) if l.startswith("error:")]
  assert len(errors) == 1 and f"{raw} is unreadable" in errors[0] and "download" in errors[0]
  assert not [l for l in _lines(proc) if _NOISE.search(l)]
  assert raw.stat().st_size == 1000 and not path.exists()


# Prepared TFDS splits and TFDS's own prepared copy, on real MNIST ------------------------------


def _mnist_copy(tmp_path, mnist_env) -> dict:
  """A private copy of the prepared MNIST (our .npz splits and TFDS's copy), to damage."""
  env = dict(mnist_env)
  for key, name in (("VAE_JAX_CACHE_DIR", "cache"), ("VAE_JAX_TFDS_DIR", "tfds")):
    shutil.copytree(mnist_env[key], tmp_path / name)
    env[key] = str(tmp_path / name)
  return env


_MNIST_ARGS = ["--config", str(ROOT / "configs" / "default.py"), "--config.num_epochs=1",
               "--config.batch_size=1000", "--config.eval_batch_size=1000",
               "--config.model.hidden_sizes=(16,)", "--config.model.latent_dim=2",
               "--config.wandb.mode=disabled", "--config.write_figures=False"]


@pytest.mark.slow
def test_a_damaged_prepared_split_is_moved_aside_and_prepared_again(tmp_path, mnist_env):
  env = _mnist_copy(tmp_path, mnist_env)
  split = pathlib.Path(env["VAE_JAX_CACHE_DIR"]) / "mnist" / "test.npz"
  original = cache.read(split)
  damaged = _flip_a_byte(split, 0.7)  # inside the images: zip's CRC catches it
  proc = launch([*_MNIST_ARGS, "--workdir", str(tmp_path / "run")], env=env)
  dest = _one_warning(proc, split, "preparing it again")
  assert dest.read_bytes() == damaged
  again = cache.read(split)
  for a, b in zip(again[:2], original[:2]):
    np.testing.assert_array_equal(a, b)
  assert again[2:] == original[2:]
  _no_temporary_files(tmp_path)


@pytest.mark.slow
def test_tfds_damaged_prepared_copy_is_moved_aside_and_prepared_again_from_the_raw_files(
    tmp_path, mnist_env):
  env = _mnist_copy(tmp_path, mnist_env)
  ours = pathlib.Path(env["VAE_JAX_CACHE_DIR"]) / "mnist" / "test.npz"
  original = cache.read(ours)
  ours.unlink()  # so the test split is read from TFDS's copy again
  prepared = pathlib.Path(env["VAE_JAX_TFDS_DIR"]) / "mnist" / "3.0.1"
  shard = next(prepared.glob("mnist-test.tfrecord*"))
  damaged = _flip_a_byte(shard)  # TFRecord's CRC: TensorFlow's DataLossError
  proc = launch([*_MNIST_ARGS, "--workdir", str(tmp_path / "run")], env=env)
  dest = _one_warning(proc, prepared,
                      f"preparing it again from {os.path.join(env['VAE_JAX_MANUAL_DIR'], 'mnist')}")
  assert "DataLossError" in proc.stderr
  assert (dest / shard.name).read_bytes() == damaged
  assert sorted(p.name for p in prepared.iterdir()) == sorted(p.name for p in dest.iterdir())
  np.testing.assert_array_equal(cache.read(ours)[0], original[0])

  # A dataset_info.json that does not parse fails TFDS's builder: the same repair.
  ours.unlink()
  (prepared / "dataset_info.json").write_text('{"name": "mni')
  proc = launch([*_MNIST_ARGS, "--workdir", str(tmp_path / "run2")], env=env)
  dest = _one_warning(proc, prepared, "preparing it again from")
  assert (dest / "dataset_info.json").read_text() == '{"name": "mni'
  np.testing.assert_array_equal(cache.read(ours)[1], original[1])


# The compilation cache ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_damaged_compiled_program_is_moved_aside_and_compiled_again(tmp_path):
  """JAX alone warns (a two-line Python warning), compiles, and never replaces the entry, so
  every later launch warns and compiles again; the launcher's check sets it aside once."""
  config = tmp_path / "tiny.py"
  config.write_text(TINY_CONFIG_FILE.format(cache_dir=write_fake_cache(tmp_path / "data")))
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
  env["VAE_JAX_CACHE_DIR"] = str(tmp_path / "cache")  # the cache: VAE_JAX_CACHE_DIR/xla
  run = lambda name: forkserver.run(
      [sys.executable, str(ROOT / "launch.py"), "--config", str(config), "--nosweep",
       "--config.num_epochs=1", "--workdir", str(tmp_path / name)], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=600)
  first = run("a")
  assert first.returncode == 0, first.stderr[-3000:]
  xla = tmp_path / "cache" / "xla"
  entry = max(xla.glob("*-cache"), key=lambda p: p.stat().st_size)  # the training program
  damaged = _flip_a_byte(entry)
  proc = run("b")
  dest = _one_warning(proc, entry, "compiling it again")
  assert dest.read_bytes() == damaged
  assert entry.is_file() and entry.read_bytes() != damaged  # cached afresh
  assert _results(tmp_path / "b") == _results(tmp_path / "a")
  _no_warning(run("c"))


# folder: and npz: caches, in-process ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["npz", "folder"])
def test_a_damaged_cache_of_a_users_source_is_prepared_again(tmp_path, capsys, kind):
  from configs import default  # pylint: disable=g-import-not-at-top
  from tests.helpers import write_image_folder  # pylint: disable=g-import-not-at-top
  from vae_jax import data  # pylint: disable=g-import-not-at-top
  if kind == "npz":
    source = tmp_path / "images.npz"
    np.savez(source, images=np.random.default_rng(0).integers(0, 256, (30, 12, 10, 1), np.uint8))
  else:
    source = tmp_path / "images"
    write_image_folder(source, 30, shape=(12, 10, 1))
  c = default.get_config().data
  c.name, c.cache_dir, c.resize, c.binarization = f"{kind}:{source}", str(tmp_path / "c"), (8, 8), "none"
  first = data.load(c)
  [split] = list((tmp_path / "c").rglob("train.npz"))
  split.write_bytes(b"PK\x03\x04 not a zip")
  capsys.readouterr()
  again = data.load(c)
  err = capsys.readouterr().err
  np.testing.assert_array_equal(again.train_images, first.train_images)
  assert err.count("warning:") == 1 and f"warning: {split} is not a readable cached split" in err
  assert (split.parent / "damaged").is_dir() and cache.read(split) is not None
  # Its arrays must be a split: labels that do not match the images are damage too.
  np.savez(split, images=first.train_images, labels=np.zeros(3, np.int32))
  capsys.readouterr()
  np.testing.assert_array_equal(data.load(c).train_images, first.train_images)
  assert "3 labels for" in capsys.readouterr().err


# dSprites' procedural cache, in-process (a small render stands in for the whole set) ---------


def test_a_damaged_procedural_cache_is_rendered_again(tmp_path, monkeypatch, capsys):
  factors = dsprites.sample_factors(8, np.random.default_rng(6))
  small = dsprites.pack(dsprites.render(factors)), factors
  calls = []
  monkeypatch.setattr(dsprites, "packed_dataset", lambda: calls.append(1) or small)
  dsprites.load(tmp_path)
  path = tmp_path / "dsprites" / "procedural.npz"
  bad_factors = small[1].copy()
  bad_factors[0, 2] = 40  # outside the grid: not a dSprites cache
  files.save_npz(path, packed=small[0], factors=bad_factors,
                 renderer_version=np.int64(dsprites.RENDERER_VERSION))
  capsys.readouterr()
  packed, _ = dsprites.load(tmp_path)
  assert calls == [1, 1]
  np.testing.assert_array_equal(packed, small[0])
  err = capsys.readouterr().err
  assert re.search(rf"warning: {re.escape(str(path))} is not a readable dSprites cache "
                   r"\(ValueError: factor indices outside the grid.*\); moved it to .*damaged/"
                   r"procedural\.npz\.\S+; rendering it again", err), err


# The one reader both caches share (`cache.read_checked`) ------------------------------------


def test_read_checked_moves_aside_what_fails_its_check_and_nothing_else(tmp_path, capsys):
  path = tmp_path / "derived.npz"

  def load(fh):
    return fh.read()

  def check(contents):
    if contents != b"good":
      raise ValueError("not good\nsecond line")

  assert cache.read_checked(path, load, check, "test cache", "making it again") is None
  path.write_bytes(b"good")
  assert cache.read_checked(path, load, check, "test cache", "making it again") == b"good"
  assert capsys.readouterr().err == ""
  path.write_bytes(b"bad")
  assert cache.read_checked(path, load, check, "test cache", "making it again") is None
  [warning] = capsys.readouterr().err.splitlines()  # one line, though the reason has two
  assert re.fullmatch(rf"warning: {re.escape(str(path))} is not a readable test cache "
                      r"\(ValueError: not good\); moved it to .*damaged/derived\.npz\.\S+; "
                      r"making it again", warning), warning
  assert not path.exists()
  [kept] = (tmp_path / "damaged").glob("derived.npz.*")
  assert kept.read_bytes() == b"bad"
  # One that exists but cannot be opened is not the cache's fault: one line, left in place.
  path.mkdir()
  with pytest.raises(UserError, match=rf"test cache {re.escape(str(path))} cannot be opened"):
    cache.read_checked(path, load, check, "test cache", "making it again")
  assert path.is_dir()


# Two launches that find the same damage at once ---------------------------------------------


def test_only_the_file_found_damaged_is_moved_and_only_once(tmp_path):
  path = tmp_path / "split.npz"
  path.write_bytes(b"damaged")
  seen = files.identity(path)
  barrier, moved = threading.Barrier(8), []

  def one():
    barrier.wait()
    moved.append(files.set_aside(path, seen))

  threads = [threading.Thread(target=one) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  dests = [d for d in moved if d is not None]
  assert len(dests) == 1 and dests[0].read_bytes() == b"damaged" and not path.exists()
  # Rebuilt by the first (a rename: a new file), the old finding no longer applies to it.
  files.write_bytes(path, b"rebuilt")
  assert files.set_aside(path, seen) is None and path.read_bytes() == b"rebuilt"
  assert [p.name for p in (tmp_path / "damaged").iterdir() if p.name != ".lock"] == [
      dests[0].name]


def test_two_processes_reading_one_damaged_split_both_prepare_it(tmp_path):
  path = tmp_path / "mnist" / "test.npz"
  path.parent.mkdir()
  path.write_bytes(b"PK\x03\x04 damaged")
  code = ("import pathlib, sys; from vae_jax.data import cache;"
          f" assert cache.read(pathlib.Path({str(path)!r})) is None")
  procs = [forkserver.popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
  errs = [p.communicate(timeout=120)[1] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], errs
  # The first to take the lock moves it; the other, if it too read the damaged file, says
  # so; if it came later, it found no cache and prepares one.
  assert all(e.count("warning:") <= 1 and "Traceback" not in e for e in errs), errs
  assert sum("moved it to" in e for e in errs) == 1
  kept = [p for p in (path.parent / "damaged").iterdir() if p.name != ".lock"]
  assert len(kept) == 1 and kept[0].read_bytes() == b"PK\x03\x04 damaged"
