"""Data from anywhere: image folders (`folder:PATH`) and arrays (`npz:PATH`) with and without
labels, the preprocessing (crop, resize, colour) against references computed independently
(Pillow on the same images, `jax.image.resize`, the luma formula), the preprocessing in the
cache key, and bad input as one line from the launcher (exit 2, no workdir)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.helpers import launch, tiny_config, write_celeba_like, write_image_folder
from vae_jax import data as data_lib, launcher, validate
from vae_jax.data import local, tfds
from vae_jax.errors import UserError


def _data(tmp_path, name, **fields):
  """The data config of `name` with `fields` (grey levels as stored: binarization "none")."""
  fields = {"binarization": "none", **fields}
  c = tiny_config(**{"data.name": name, **{f"data.{k}": v for k, v in fields.items()}})
  c.data.cache_dir = str(tmp_path / "cache")
  return c.data


def _pillow(x, box, size=None):
  """Pillow on the same pixels: crop to box = (top, left, height, width), bilinear resize."""
  top, left, h, w = box
  img = Image.fromarray(x).crop((left, top, left + w, top + h))
  if size is not None:
    img = img.resize(size[::-1], Image.Resampling.BILINEAR)
  return np.asarray(img)


def test_crop_and_resize_equal_pillow_and_agree_with_jax_image(tmp_path):
  # CelebA's size, noise (the hardest case for a resize), in fixed splits to know the order
  train = write_image_folder(tmp_path / "f" / "train", 3, (218, 178, 3), seed=0)
  test = write_image_folder(tmp_path / "f" / "test", 2, (218, 178, 3), seed=1)
  ds = data_lib.load(_data(tmp_path, f"folder:{tmp_path / 'f'}", crop=(148,), resize=(64, 64)))
  assert ds.train_images.shape == (3, 64, 64, 3) and ds.test_images.shape == (2, 64, 64, 3)
  assert not ds.labelled
  for got, x in zip([*ds.train_images, *ds.test_images], [*train.values(), *test.values()]):
    np.testing.assert_array_equal(got, _pillow(x, (35, 15, 148, 148), (64, 64)))
    ref = jax.image.resize(jnp.asarray(x[35:183, 15:163], jnp.float32), (64, 64, 3), "linear",
                           antialias=True)
    assert np.abs(got - np.asarray(ref)).max() <= 1.0  # Pillow rounds to uint8 between passes

  x = next(iter(train.values()))
  for crop, box in (((10, 20, 100, 80), np.s_[10:110, 20:100]),  # a box
                    ((100, 60), np.s_[59:159, 59:119])):  # a centred one: (218-100)//2, ...
    ds = data_lib.load(_data(tmp_path, f"folder:{tmp_path / 'f'}", crop=crop))
    np.testing.assert_array_equal(ds.train_images[0], x[box])
  grey = data_lib.load(_data(tmp_path, f"folder:{tmp_path / 'f'}", color="grey"))
  luma = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  assert grey.image_shape == (218, 178, 1)
  assert np.abs(grey.train_images[0, ..., 0] - luma).max() <= 1

  # grey PNGs made RGB repeat the level; float arrays in [0, 1] preprocess as their uint8 do
  g = write_image_folder(tmp_path / "g", 4, (9, 7, 1))
  rgb = data_lib.load(_data(tmp_path, f"folder:{tmp_path / 'g'}", color="rgb"))
  assert rgb.image_shape == (9, 7, 3)
  assert (rgb.train_images == rgb.train_images[..., :1]).all()
  assert {x[..., 0].tobytes() for x in rgb.train_images} <= {x.tobytes() for x in g.values()}
  x = np.stack(list(train.values()))
  np.savez(tmp_path / "a.npz", train_images=x / np.float32(255),
           test_images=x[:1] / np.float32(255))
  arr = data_lib.load(_data(tmp_path, f"npz:{tmp_path / 'a.npz'}", crop=(148,), resize=(64,)))
  np.testing.assert_array_equal(arr.train_images[2], _pillow(x[2], (35, 15, 148, 148), (64, 64)))


def test_the_cache_key_changes_with_the_preprocessing(tmp_path, capsys):
  root = tmp_path / "f"
  write_image_folder(root, 10, (16, 12, 3))
  name = f"folder:{root}"
  variants = [{}, {"crop": (8,)}, {"crop": (8, 6)}, {"crop": (1, 2, 8, 6)}, {"resize": (4, 4)},
              {"color": "grey"}, {"test_fraction": 0.3}]
  folders = [local.cache_folder(_data(tmp_path, name, **v), "folder", str(root), {})
             for v in variants]
  assert len(set(folders)) == len(variants)
  # the same preprocessing spelled two ways is one cache
  assert (local.cache_folder(_data(tmp_path, name, crop=(8,), resize=(4,)), "folder", str(root), {})
          == local.cache_folder(_data(tmp_path, name, crop=(8, 8), resize=(4, 4)), "folder",
                                str(root), {}))

  first = data_lib.load(_data(tmp_path, name, crop=(8,)))
  assert "Preparing" in capsys.readouterr().out
  again = data_lib.load(_data(tmp_path, name, crop=(8,)))  # from the cache: nothing decoded
  assert "Preparing" not in capsys.readouterr().out
  np.testing.assert_array_equal(first.train_images, again.train_images)
  data_lib.load(_data(tmp_path, name, crop=(6,)))
  assert "Preparing" in capsys.readouterr().out
  write_image_folder(root, 11, (16, 12, 3))  # one image more: prepared again
  assert len(data_lib.load(_data(tmp_path, name, crop=(8,))).train_images) == 10
  assert "Preparing" in capsys.readouterr().out

  # TFDS: the default keeps the cache path of every earlier launch; any choice changes it
  cache = tmp_path / "cache"
  assert tfds._cache_path(_data(tmp_path, "mnist"), "train") == cache / "mnist" / "train.npz"
  paths = {tfds._cache_path(_data(tmp_path, "mnist", **v), "train") for v in
           ({}, {"crop": (20,)}, {"resize": (32, 32)}, {"color": "rgb"}, {"label_features": ()},
            {"label_features": ("label",)})}
  assert len(paths) == 6 and all(p.parent.parent == cache / "mnist" for p in paths if
                                 p != cache / "mnist" / "train.npz")


def test_folder_layouts_and_labels(tmp_path):
  written = write_image_folder(tmp_path / "c", 20, (8, 8, 1), classes=("cat", "dog"))
  ds = data_lib.load(_data(tmp_path, f"folder:{tmp_path / 'c'}", test_fraction=0.25))
  assert (len(ds.train_images), len(ds.test_images)) == (15, 5)
  assert ds.factor_names == ("class",) and ds.factor_sizes == (2,) and ds.labelled
  label_of = {x.tobytes(): int(rel.startswith("dog")) for rel, x in written.items()}
  for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
    assert [label_of[x.tobytes()] for x in images] == labels.tolist()
  assert ds.factors("train").shape == (15, 1)

  # fixed splits in train/ and test/; unlabelled: no factors, zero labels
  write_image_folder(tmp_path / "s" / "train", 6, (8, 8, 3))
  write_image_folder(tmp_path / "s" / "test", 3, (8, 8, 3), seed=1)
  ds = data_lib.load(_data(tmp_path, f"folder:{tmp_path / 's'}"))
  assert (len(ds.train_images), len(ds.test_images)) == (6, 3) and not ds.labelled
  assert ds.factor_names == () and ds.factors("train").shape == (6, 0)
  assert not ds.train_labels.any() and ds.train_labels.shape == (6,)
  with pytest.raises(UserError, match="exclude_labels.*no labels"):
    data_lib.load(_data(tmp_path, f"folder:{tmp_path / 's'}", exclude_labels=(1,)))

  # CelebA's zip layout: one sub-folder of JPEGs, unlabelled; a CSV labels it with factors
  files = write_image_folder(tmp_path / "one" / "img_align_celeba", 10, (8, 8, 3), suffix=".jpg")
  ds = data_lib.load(_data(tmp_path, f"folder:{tmp_path / 'one'}"))
  assert (len(ds.train_images), len(ds.test_images), ds.labelled) == (9, 1, False)
  rows = ["file,smiling,hair"] + [f"img_align_celeba/{rel},{i % 2},{i % 3}"
                                  for i, rel in enumerate(files)]
  (tmp_path / "attrs.csv").write_text("\n".join(rows) + "\n")
  ds = data_lib.load(_data(tmp_path, f"folder:{tmp_path / 'one'}",
                           label_file=str(tmp_path / "attrs.csv")))
  assert ds.factor_names == ("smiling", "hair") and ds.factor_sizes == (2, 3)
  assert ds.train_labels.shape == (9, 2)

  # grey and colour images mixed: all RGB
  write_image_folder(tmp_path / "m", 3, (8, 8, 1))
  write_image_folder(tmp_path / "m", 2, (8, 8, 3), seed=5)  # overwrites 0000, 0001 in colour
  assert data_lib.load(_data(tmp_path, f"folder:{tmp_path / 'm'}")).image_shape == (8, 8, 3)


def test_array_layouts_labels_and_dtypes(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
  y = rng.integers(0, 3, 30)
  np.savez(tmp_path / "l.npz", images=x, labels=y)
  ds = data_lib.load(_data(tmp_path, f"npz:{tmp_path / 'l.npz'}"))
  assert (len(ds.train_images), len(ds.test_images)) == (27, 3) and ds.image_shape == (8, 8, 1)
  assert ds.factor_names == ("label",) and ds.factor_sizes == (int(y.max()) + 1,)
  order = {r.tobytes(): i for i, r in enumerate(x[..., None])}
  assert [y[order[r.tobytes()]] for r in ds.train_images] == ds.train_labels.tolist()

  f = np.stack([y, rng.integers(0, 4, 30)], 1)
  np.savez(tmp_path / "f.npz", train_images=x[:20], train_labels=f[:20], test_images=x[20:],
           test_labels=f[20:], factor_names=np.array(["shape", "scale"]), factor_sizes=[3, 5])
  ds = data_lib.load(_data(tmp_path, f"npz:{tmp_path / 'f.npz'}"))
  assert ds.factor_names == ("shape", "scale") and ds.factor_sizes == (3, 5)
  np.testing.assert_array_equal(ds.test_labels, f[20:])
  np.testing.assert_array_equal(ds.test_images[..., 0], x[20:])

  np.savez(tmp_path / "k.npz", x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
  ds = data_lib.load(_data(tmp_path, f"npz:{tmp_path / 'k.npz'}"))
  np.testing.assert_array_equal(ds.train_labels, y[:20])

  np.savez(tmp_path / "one.npz", x.astype(bool))  # one array (arr_0): unlabelled images
  ds = data_lib.load(_data(tmp_path, f"npz:{tmp_path / 'one.npz'}"))
  assert not ds.labelled and set(np.unique(ds.train_images)) <= {0, 255}

  xf = rng.random((30, 8, 8, 3)).astype(np.float32)
  np.save(tmp_path / "imgs.npy", xf)
  np.save(tmp_path / "labels.npy", f)
  ds = data_lib.load(_data(tmp_path, f"npz:{tmp_path / 'imgs.npy'}",
                           label_file=str(tmp_path / "labels.npy")))
  assert ds.image_shape == (8, 8, 3) and ds.train_labels.shape == (27, 2)
  assert ds.factor_names == ("factor_0", "factor_1")
  rounded = {r.tobytes() for r in np.round(xf * 255).astype(np.uint8)}
  assert all(r.tobytes() in rounded for r in ds.train_images)


def test_tfds_labels_are_optional_and_selectable(tmp_path, monkeypatch):
  class ClassLabel:  # what TFDS's ClassLabel and bool Tensor features offer the reader
    def __init__(self, n):
      self.num_classes = n

  class Tensor:
    def __init__(self, dtype):
      self.np_dtype, self.shape = dtype, ()

  celeba_like = {"image": object(), "attributes": {"Male": Tensor(np.bool_),
                                                   "Smiling": Tensor(np.bool_)},
                 "identity": {"Identity_No": Tensor(np.int64)}}
  assert tfds.factor_features(celeba_like) == ()  # no label: unlabelled
  assert tfds.factor_features(celeba_like, ("attributes/Smiling", "attributes/Male")) == (
      ("attributes/Smiling", 2), ("attributes/Male", 2))
  assert tfds.factor_features({"image": 0, "label": ClassLabel(10)}, ()) == ()
  for bad in (("attributes/Beard",), ("identity/Identity_No",)):
    with pytest.raises(UserError, match="label_features"):
      tfds.factor_features(celeba_like, bad)
  arrays = {"attributes": {"Male": np.array([True, False]), "Smiling": np.array([False, False])}}
  np.testing.assert_array_equal(
      tfds.labels_of(arrays, (("attributes/Male", 2), ("attributes/Smiling", 2))), [[1, 0], [0, 0]])

  # an unlabelled TFDS split loads, caches and reads back without factors
  images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
  monkeypatch.setattr(tfds, "_prepare_with_tfds", lambda config, split: (
      images, tfds.labels_of({}, (), len(images)), (), ()))
  for _ in range(2):  # prepared, then from the cache
    ds = data_lib.load(_data(tmp_path, "faces_like"))
    assert not ds.labelled and ds.factor_names == () and ds.factors("test").shape == (20, 0)
    np.testing.assert_array_equal(ds.train_images, images)
  c = tiny_config(**{"data.name": "faces_like", "eval_disentanglement": True})
  c.data.cache_dir = str(tmp_path / "cache")
  with pytest.raises(UserError, match="eval_disentanglement.*no labels"):
    validate.validate(c)


def _bad_inputs(tmp_path):
  """(config overrides, words its one line must hold) for each bad input."""
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "notes.txt").write_text("no images here")
  write_image_folder(tmp_path / "mixed", 2, (8, 8, 3))
  write_image_folder(tmp_path / "mixed" / "x", 1, (9, 8, 3))  # a second layout...
  write_image_folder(tmp_path / "sizes", 3, (8, 8, 3))
  Image.fromarray(np.zeros((10, 8, 3), np.uint8)).save(tmp_path / "sizes" / "0009.png")
  ok = tmp_path / "ok"
  write_image_folder(ok, 12, (8, 8, 3))
  (tmp_path / "labels.csv").write_text("file,label\n0000.png,1\n0001.png,0\n")
  np.save(tmp_path / "rank.npy", np.zeros((4, 8), np.uint8))
  np.save(tmp_path / "dtype.npy", np.zeros((4, 8, 8), np.int64))
  np.save(tmp_path / "range.npy", np.full((4, 8, 8), 2.0, np.float32))
  np.save(tmp_path / "imgs.npy", np.zeros((12, 8, 8), np.uint8))
  np.save(tmp_path / "short.npy", np.zeros(5, np.int32))
  return [
      ({"data.name": f"folder:{tmp_path / 'empty'}"}, ("holds no PNG or JPEG",)),
      ({"data.name": f"folder:{tmp_path / 'mixed'}"}, ("mixes images",)),
      ({"data.name": f"folder:{tmp_path / 'sizes'}"}, ("data.resize", "differ in size",
                                                       "8 x 8", "10 x 8")),
      ({"data.name": f"npz:{tmp_path / 'rank.npy'}"}, ("shape (4, 8)", "(N, H, W)")),
      ({"data.name": f"npz:{tmp_path / 'dtype.npy'}"}, ("int64", "uint8")),
      ({"data.name": f"npz:{tmp_path / 'range.npy'}"}, ("[2, 2]", "[0, 1]")),
      ({"data.name": f"folder:{ok}", "data.crop": (20,)}, ("data.crop", "8 x 8")),
      ({"data.name": f"folder:{ok}", "data.label_file": str(tmp_path / "labels.csv")},
       ("labels.csv has no row for 0002.png",)),
      ({"data.name": f"npz:{tmp_path / 'imgs.npy'}",
        "data.label_file": str(tmp_path / "short.npy")},
       ("5 rows for 12 images",)),
      ({"data.name": f"folder:{ok}", "eval_disentanglement": True},
       ("eval_disentanglement", "no labels")),
      ({"data.name": f"folder:{ok}", "data.label_features": ("label",)}, ("data.label_features",)),
      ({"data.name": "npz:x.csv"}, ("data.name", ".npz or .npy")),
  ]


def test_bad_input_is_one_line_and_no_workdir(tmp_path, capsys):
  for overrides, words in _bad_inputs(tmp_path):
    c = tiny_config(**overrides)
    c.data.cache_dir = str(tmp_path / "cache")
    wd = tmp_path / "wd"
    with pytest.raises(SystemExit) as e:
      launcher.main(config=c, config_path="configs/default.py", workdir=str(wd))
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert e.value.code == 2, (overrides, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (overrides, err)
    assert all(w in lines[0] for w in words), (words, lines[0])
    assert not wd.exists(), overrides
  assert not list((tmp_path / "cache").glob("**/*.npz"))  # nothing half prepared


def test_the_celeba_config_validates_and_prepares_a_celeba_shaped_folder(tmp_path):
  from configs import celeba_beta  # pylint: disable=g-import-not-at-top
  folder = write_celeba_like(tmp_path / "celeba", n=10)
  c = celeba_beta.get_config()
  validate.validate(c)
  assert celeba_beta.get_config("2d").model.latent_dim == 2
  with pytest.raises(UserError, match="3d"):
    celeba_beta.get_config("3d")
  c.data.name, c.data.cache_dir = f"folder:{folder}", str(tmp_path / "cache")
  ds = data_lib.load(c.data)
  assert ds.image_shape == (64, 64, 3) and (len(ds.train_images), len(ds.test_images)) == (9, 1)
  assert ds.binarization == "none" and not ds.labelled


_SOURCES_SWEEP = '''
"""Four sources, one per member, all 8 x 8 x 3 after preprocessing (one compiled program)."""
from configs import default

def get_config():
  c = default.get_config()
  c.num_epochs = 1
  c.batch_size = 16
  c.model.hidden_sizes = (32,)
  c.model.latent_dim = 4
  c.eval_batch_size = 8
  c.num_plot_images = 4
  c.write_figures = False
  c.kl_decomposition_points = 0
  c.wandb.mode = "disabled"
  c.data.cache_dir = {cache!r}
  c.data.test_fraction = 0.2
  return c

def get_sweep():
  return {{
      "folder_labelled": {{"data.name": "folder:{root}/classes", "data.crop": (8,)}},
      "folder_unlabelled": {{"data.name": "folder:{root}/flat", "data.crop": (8,),
                            "write_figures": True}},
      "npz_labelled": {{"data.name": "npz:{root}/labelled.npz"}},
      "npy_unlabelled": {{"data.name": "npz:{root}/floats.npy", "data.color": "rgb"}},
  }}
'''


@pytest.mark.slow
def test_folders_and_arrays_train_from_the_launcher_with_and_without_labels(tmp_path):
  rng = np.random.default_rng(0)
  write_image_folder(tmp_path / "classes", 40, (12, 10, 3), classes=("a", "b"))
  write_image_folder(tmp_path / "flat", 40, (10, 12, 3), suffix=".jpg")
  np.savez(tmp_path / "labelled.npz", images=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
           labels=rng.integers(0, 10, 40))
  np.save(tmp_path / "floats.npy", rng.random((40, 8, 8)).astype(np.float32))
  cfg = tmp_path / "sources.py"
  cfg.write_text(_SOURCES_SWEEP.format(cache=str(tmp_path / "cache"), root=str(tmp_path)))
  proc = launch(["--config", str(cfg), "--workdir", str(tmp_path / "runs")])
  assert proc.returncode == 0, proc.stderr[-3000:]
  for member in ("folder_labelled", "folder_unlabelled", "npz_labelled", "npy_unlabelled"):
    wd = tmp_path / "runs" / member
    results = json.loads((wd / "results.json").read_text())
    assert np.isfinite(results["test/neg_elbo"]), (member, results)
    assert results["epochs"] == 1 and results["steps"] == 2  # 32 training images, batch 16
  figures = {p.name for p in (tmp_path / "runs" / "folder_unlabelled").glob("*.png")}
  assert {"reconstructions.png", "samples.png", "latents.png", "traversals.png"} <= figures
