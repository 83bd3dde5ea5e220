"""Procedural dSprites (`vae_jax/data/dsprites.py`): factor bookkeeping, geometry, bit packing,
the cache and the reader of the released file. Only small subsets are rendered here."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.data import dsprites
from vae_jax.errors import UserError

SQUARE, ELLIPSE, HEART = 0, 1, 2


def grid(**fixed_or_ranges):
  """All combinations of the given factor values (ints or sequences), (N, 5) int32."""
  axes = [np.atleast_1d(fixed_or_ranges.get(name, 0)) for name in dsprites.FACTOR_NAMES]
  mesh = np.meshgrid(*axes, indexing="ij")
  return np.stack([m.reshape(-1) for m in mesh], axis=1).astype(np.int32)


def masks(factors_Nx5):
  return dsprites.render(factors_Nx5)[..., 0] > 0


def centroids(m_NxHxW):
  rows, cols = np.indices(m_NxHxW.shape[1:])
  area = m_NxHxW.sum(axis=(1, 2))
  return (m_NxHxW * rows).sum(axis=(1, 2)) / area, (m_NxHxW * cols).sum(axis=(1, 2)) / area


def iou(a, b):
  return (a & b).sum() / (a | b).sum()


# --- Factor bookkeeping ------------------------------------------------------------------------


def test_index_order_is_the_released_c_order_product():
  assert dsprites.NUM_IMAGES == 737280 == int(np.prod(dsprites.FACTOR_SIZES))
  all_factors = dsprites.index_to_factors(np.arange(dsprites.NUM_IMAGES))
  assert all_factors.dtype == np.int32 and all_factors.shape == (737280, 5)
  expected = np.stack(np.unravel_index(np.arange(737280), dsprites.FACTOR_SIZES), axis=1)
  np.testing.assert_array_equal(all_factors, expected)
  # posY fastest, then posX, ...: the release's latents_classes without its colour column.
  np.testing.assert_array_equal(all_factors[[0, 1, 32, 1024, 40960, 245760]],
                                [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0],
                                 [0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0]])


def test_factor_index_round_trip():
  rng = np.random.default_rng(0)
  f = dsprites.sample_factors(5000, rng)
  i = dsprites.factors_to_index(f)
  np.testing.assert_array_equal(i, np.ravel_multi_index(f.T, dsprites.FACTOR_SIZES))
  np.testing.assert_array_equal(dsprites.index_to_factors(i), f)
  idx = rng.integers(0, dsprites.NUM_IMAGES, 5000)
  np.testing.assert_array_equal(dsprites.factors_to_index(dsprites.index_to_factors(idx)), idx)


def test_bad_factors_are_refused():
  with pytest.raises(ValueError, match="orientation"):
    dsprites.factors_to_index([[0, 0, 40, 0, 0]])
  with pytest.raises(ValueError, match="shape"):
    dsprites.render(np.zeros((3, 4), np.int32))
  with pytest.raises(ValueError):
    dsprites.index_to_factors(np.array([dsprites.NUM_IMAGES]))


def test_factor_values_are_the_released_ones():
  shape, scale, orientation, x, y = dsprites.factor_values()
  assert [len(v) for v in dsprites.factor_values()] == list(dsprites.FACTOR_SIZES)
  np.testing.assert_array_equal(shape, [1, 2, 3])
  np.testing.assert_allclose(scale, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
  assert orientation[0] == 0 and orientation[-1] == pytest.approx(2 * np.pi)  # both ends
  np.testing.assert_allclose(orientation[1], 2 * np.pi / 39)
  np.testing.assert_allclose(x, np.linspace(0, 1, 32))
  np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("rng", [np.random.default_rng(1), np.random.RandomState(1)])
def test_sample_factors_is_uniform_over_the_grid(rng):
  f = dsprites.sample_factors(30000, rng)
  assert f.dtype == np.int32 and f.shape == (30000, 5)
  for d, size in enumerate(dsprites.FACTOR_SIZES):
    counts = np.bincount(f[:, d], minlength=size)
    assert len(counts) == size
    assert counts.min() > 0.75 * 30000 / size and counts.max() < 1.25 * 30000 / size


def test_test_indices_are_fixed_sorted_and_nested():
  t = dsprites.test_indices()
  assert t.shape == (10000,) and t.dtype == np.int64
  assert (np.diff(t) > 0).all() and t[0] >= 0 and t[-1] < dsprites.NUM_IMAGES
  # Pinned: the documented splitmix64 rule, independent of NumPy's random streams.
  np.testing.assert_array_equal(t[:5], [148, 201, 268, 394, 411])
  assert int(t.sum()) == 3704437556
  np.testing.assert_array_equal(dsprites.test_indices(), t)
  assert np.isin(dsprites.test_indices(100), t).all()
  # Spread over the whole set: every shape is represented in about a third of the subset.
  shares = np.bincount(dsprites.index_to_factors(t)[:, 0]) / len(t)
  np.testing.assert_allclose(shares, 1 / 3, atol=0.02)


# --- Geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_position_x_moves_along_columns_and_y_along_rows(shape):
  along_x = masks(grid(shape=shape, scale=5, orientation=7, position_x=range(32), position_y=9))
  rows, cols = centroids(along_x)
  assert (np.diff(cols) > 0.5).all()  # about 32/31 px a step
  assert np.ptp(rows) < 0.6
  along_y = masks(grid(shape=shape, scale=5, orientation=7, position_x=22, position_y=range(32)))
  rows, cols = centroids(along_y)
  assert (np.diff(rows) > 0.5).all()  # y = 0 is the top row
  assert np.ptp(cols) < 0.6


def test_centre_range_in_pixels():
  """The square's centroid runs from pixel 15.5 to 47.5 (reference point 16 + 32 * value)."""
  corners = masks(grid(shape=SQUARE, scale=range(6), position_x=[0, 31], position_y=[0, 31]))
  rows, cols = centroids(corners)
  np.testing.assert_allclose(np.sort(np.unique(np.round(cols, 3))), [15.5, 47.5], atol=0.01)
  np.testing.assert_allclose(np.sort(np.unique(np.round(rows, 3))), [15.5, 47.5], atol=0.01)


@pytest.mark.parametrize("shape", [SQUARE, ELLIPSE, HEART])
def test_area_grows_like_scale_squared(shape):
  area = masks(grid(shape=shape, scale=range(6), orientation=[0, 13], position_x=3,
                    position_y=17)).sum(axis=(1, 2)).reshape(6, 2)
  assert (np.diff(area, axis=0) > 0).all()
  s = dsprites.factor_values()[1]
  np.testing.assert_allclose(area / area[-1], np.stack([s ** 2, s ** 2], axis=1), rtol=0.12)


def test_square_sizes_match_the_release():
  """Axis-aligned squares at whole-pixel positions are 10, 12, ..., 20 px wide, as released."""
  area = masks(grid(shape=SQUARE, scale=range(6))).sum(axis=(1, 2))
  np.testing.assert_array_equal(area, [100, 144, 196, 256, 324, 400])


def test_shapes_have_different_areas_at_equal_scale():
  area = masks(grid(shape=range(3), scale=range(6), position_x=12, position_y=5)
               ).sum(axis=(1, 2)).reshape(3, 6)
  assert (area[SQUARE] > 1.15 * area[ELLIPSE]).all()
  assert (area[ELLIPSE] > 1.15 * area[HEART]).all()


def test_heart_points_down_and_turns_counterclockwise():
  """The heart's centroid is above its reference point (lobes up), and orientation turns it
  counterclockwise as displayed: up -> left -> down -> right at 0, ~pi/2, ~pi, ~3pi/2."""
  turns = masks(grid(shape=HEART, scale=5, orientation=[0, 10, 20, 29], position_x=15,
                     position_y=15))
  rows, cols = centroids(turns)
  centre = 16 + 32 * 15 / 31 - 0.5  # the reference point in pixel-index coordinates
  d_rows, d_cols = rows - centre, cols - centre
  assert d_rows[0] < -1 and abs(d_cols[0]) < 0.5
  assert d_cols[1] < -1 and abs(d_rows[1]) < 0.5
  assert d_rows[2] > 1 and abs(d_cols[2]) < 0.5
  assert d_cols[3] > 1 and abs(d_rows[3]) < 0.5


def test_square_turned_by_orientation_10_is_nearly_the_same_square():
  angle = dsprites.factor_values()[2][10]
  assert angle == pytest.approx(10 * 2 * np.pi / 39)  # 92.3 degrees: 2.3 past a quarter turn
  for scale in (0, 5):
    m = masks(grid(shape=SQUARE, scale=scale, orientation=[0, 10, 5], position_x=10,
                   position_y=20))
    assert iou(m[0], m[1]) > 0.9
    assert iou(m[0], m[2]) < 0.8  # 46 degrees: a diamond


def test_orientations_0_and_2pi_draw_the_same_image():
  f0 = grid(shape=range(3), scale=[0, 3, 5], orientation=0, position_x=[0, 17], position_y=[5, 31])
  f39 = f0.copy()
  f39[:, 2] = 39
  np.testing.assert_array_equal(dsprites.render(f0), dsprites.render(f39))


def test_images_are_binary_and_sprites_stay_inside_the_frame():
  f = grid(shape=range(3), scale=5, orientation=range(40), position_x=[0, 31], position_y=[0, 31])
  x = dsprites.render(f)
  assert x.dtype == np.uint8 and x.shape == (len(f), 64, 64, 1)
  assert set(np.unique(x)) == {0, 255}
  m = x[..., 0] > 0
  assert (m.sum(axis=(1, 2)) > 150).all()
  border = m[:, 0].any(1) | m[:, -1].any(1) | m[:, :, 0].any(1) | m[:, :, -1].any(1)
  assert not border.any()


def test_render_is_deterministic_and_order_independent():
  f = dsprites.sample_factors(200, np.random.default_rng(3))
  x = dsprites.render(f)
  np.testing.assert_array_equal(dsprites.render(f), x)
  perm = np.random.default_rng(4).permutation(len(f))
  np.testing.assert_array_equal(dsprites.render(f[perm]), x[perm])
  np.testing.assert_array_equal(dsprites.render(f[:1]), x[:1])


# --- Bit packing -------------------------------------------------------------------------------


def test_pack_unpack_round_trip_numpy_and_jax():
  x = dsprites.render(dsprites.sample_factors(64, np.random.default_rng(5)))
  packed = dsprites.pack(x)
  assert packed.dtype == np.uint8 and packed.shape == (64, 512)
  np.testing.assert_array_equal(packed, np.packbits(x.reshape(64, -1) // 255, axis=1))
  np.testing.assert_array_equal(dsprites.unpack(packed), x)
  y = dsprites.unpack_jax(jnp.asarray(packed))
  assert y.dtype == jnp.float32 and y.shape == (64, 64, 64, 1)
  np.testing.assert_array_equal(np.asarray(y), x / 255.0)
  # The training-step pattern: packed rows on device, a gathered batch unpacked inside jit.
  idx = jnp.asarray([5, 0, 63, 5])
  gathered = jax.jit(lambda p, i: dsprites.unpack_jax(p[i]))(jnp.asarray(packed), idx)
  np.testing.assert_array_equal(np.asarray(gathered), x[np.asarray(idx)] / 255.0)


# --- Cache and the released file ---------------------------------------------------------------


@pytest.fixture
def small_set():
  factors = dsprites.sample_factors(8, np.random.default_rng(6))
  return dsprites.pack(dsprites.render(factors)), factors


def no_rendering(*args, **kwargs):
  raise AssertionError("rendered although a cache or the released file should have been read")


def test_load_renders_once_then_reads_the_cache(tmp_path, monkeypatch, small_set):
  calls = []
  monkeypatch.setattr(dsprites, "packed_dataset", lambda: calls.append(1) or small_set)
  packed, factors = dsprites.load(tmp_path)
  assert calls == [1]
  np.testing.assert_array_equal(packed, small_set[0])
  assert os.listdir(tmp_path / "dsprites") == ["procedural.npz"]  # no temporary file left
  monkeypatch.setattr(dsprites, "packed_dataset", no_rendering)
  packed2, factors2 = dsprites.load(str(tmp_path))
  np.testing.assert_array_equal(packed2, small_set[0])
  np.testing.assert_array_equal(factors2, small_set[1])
  assert factors2.dtype == np.int32


def test_cache_of_another_renderer_version_is_rendered_again(tmp_path, monkeypatch, small_set):
  path = tmp_path / "dsprites" / "procedural.npz"
  dsprites._write_cache(path, *small_set, version=dsprites.RENDERER_VERSION - 1)
  calls = []
  monkeypatch.setattr(dsprites, "packed_dataset", lambda: calls.append(1) or small_set)
  dsprites.load(tmp_path)
  assert calls == [1]
  monkeypatch.setattr(dsprites, "packed_dataset", no_rendering)
  dsprites.load(tmp_path)


@pytest.mark.parametrize("content", [b"not a zip file", b"PK\x03\x04truncated"])
def test_corrupt_cache_is_moved_aside_and_rendered_again(tmp_path, monkeypatch, small_set,
                                                          capsys, content):
  path = tmp_path / "dsprites" / "procedural.npz"
  path.parent.mkdir()
  path.write_bytes(content)
  monkeypatch.setattr(dsprites, "packed_dataset", lambda: small_set)
  packed, _ = dsprites.load(tmp_path)
  np.testing.assert_array_equal(packed, small_set[0])
  [kept] = (tmp_path / "dsprites" / "damaged").glob("procedural.npz.*")
  assert kept.read_bytes() == content  # kept for inspection, as it was
  [warning] = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
  assert f"{path} is not a readable dSprites cache" in warning and str(kept) in warning
  assert "rendering it again" in warning


def write_fake_release(folder, n=10, seed=7, imgs_shape=None):
  rng = np.random.default_rng(seed)
  f = dsprites.sample_factors(n, rng)
  classes = np.concatenate([np.zeros((n, 1), np.int64), f.astype(np.int64)], axis=1)
  imgs = (rng.random(imgs_shape or (n, 64, 64)) < 0.1).astype(np.uint8)
  values = np.concatenate([np.ones((n, 1))] + [v[f[:, d]][:, None] for d, v in
                                               enumerate(dsprites.factor_values())], axis=1)
  # Like the release: compressed, with a pickled metadata entry the reader must not need.
  np.savez_compressed(folder / dsprites.RELEASED_FILENAME, imgs=imgs, latents_classes=classes,
                      latents_values=values, metadata=np.array({"title": "fake"}, dtype=object))
  return imgs, f


def test_released_file_is_read_instead_of_rendering(tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  manual.mkdir()
  imgs, f = write_fake_release(manual)
  monkeypatch.setattr(dsprites, "packed_dataset", no_rendering)
  packed, factors = dsprites.load(tmp_path / "cache", manual_dir=str(manual))
  np.testing.assert_array_equal(dsprites.unpack(packed)[..., 0], imgs * 255)
  np.testing.assert_array_equal(factors, f)
  assert (tmp_path / "cache" / "dsprites" / "released.npz").exists()
  monkeypatch.setattr(dsprites, "read_released", no_rendering)  # now from the cache
  packed2, factors2 = dsprites.load(tmp_path / "cache", manual_dir=str(manual))
  np.testing.assert_array_equal(packed2, packed)
  np.testing.assert_array_equal(factors2, f)


def test_reader_streams_in_chunks(tmp_path):
  imgs, f = write_fake_release(tmp_path, n=13)
  packed, factors = dsprites.read_released(tmp_path / dsprites.RELEASED_FILENAME, chunk=4)
  np.testing.assert_array_equal(packed, dsprites.pack(imgs))
  np.testing.assert_array_equal(factors, f)


def test_unreadable_released_file_is_a_user_error(tmp_path):
  (tmp_path / dsprites.RELEASED_FILENAME).write_bytes(b"<html>404</html>")
  with pytest.raises(UserError, match=f"{dsprites.RELEASED_FILENAME} is unreadable.*download"):
    dsprites.load(tmp_path / "cache", manual_dir=str(tmp_path))
  write_fake_release(tmp_path, n=4, imgs_shape=(4, 32, 32))
  with pytest.raises(UserError, match="imgs is uint8 \\(4, 32, 32\\)"):
    dsprites.load(tmp_path / "cache", manual_dir=str(tmp_path))


def test_no_released_file_in_manual_dir_renders(tmp_path, monkeypatch, small_set):
  monkeypatch.setattr(dsprites, "packed_dataset", lambda: small_set)
  packed, _ = dsprites.load(tmp_path / "cache", manual_dir=str(tmp_path))
  np.testing.assert_array_equal(packed, small_set[0])
  assert (tmp_path / "cache" / "dsprites" / "procedural.npz").exists()
