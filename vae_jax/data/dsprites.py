"""Procedural dSprites: DeepMind's 737,280 binary 64x64 sprites rendered here, with their factors.

The factor grid is the release's (github.com/deepmind/dsprites-dataset, April 2017): shape 3
(square, ellipse, heart), scale 6 (linspace(0.5, 1, 6)), orientation 40 (linspace(0, 2 pi, 40):
both ends are included, as released, so orientations 0 and 39 draw the same image), position x
32 and position y 32 (linspace(0, 1, 32)). Image i has the factor indices
`index_to_factors(i)`, the released file's order: a C-order product over FACTOR_SIZES, position
y fastest (the released `latents_classes` has a constant colour column in front).

The original renderer (LOVE, a 2D game framework) was never published, so these images are not
pixel-identical to the release. The geometry was measured on the 320 real dSprites frames of the
release's README animation (`dsprites.gif`: sweeps of scale, orientation and position with the
other factors fixed) and the example notebook's figures, and the parameters below were fitted
to those frames:

* Position: the sprite's reference point is at pixel coordinate 16 + 32 * value (pixel edges
  at integers, the first pixel spans [0, 1)): 16..48 in steps of 32/31 px, so a symmetric
  sprite's centroid runs over pixel indices 15.5..47.5. Position x moves it along the image
  columns (x = 0 at the left, as the notebook's "posX fixed to left" figure shows), position y
  along the rows, y = 0 at the top (the animation, which starts at image 0, begins top-left and
  first moves down). Sub-pixel positions are rendered to the nearest 1/8 px.
* Size at scale s: square half side 9.55 s; ellipse semi-axes 12.7 s along x (at orientation 0)
  and 7.2 s along y; heart (lobes up at orientation 0): a diamond |u| + |v - s| <= 7.3 s for the
  lower point and two discs of radius 4.8 s at (+-4.75 s, -4.3 s). Every shape is then grown by
  a 0.5 px outline, at every scale. Result at whole-pixel positions: squares of 10, 12, ..., 20
  px, as released; an ellipse 26 x 14 px at s = 1, 12 x 8 at s = 0.5; a heart 20 x 17 px at
  s = 1 with its centroid about 2 px above the reference point, 10 x 9 px at s = 0.5.
* Orientation rotates the sprite about its reference point by the released value in radians,
  counterclockwise as displayed (rows down); 0 and 2 pi give the same image.
* Rasterisation: a pixel is on when at least 61 of its 8 x 8 sub-samples lie inside; like the
  release, partly covered edge pixels are dropped (a square at 45 degrees has about 368 pixels
  where the exact shape has 400).

Against the 320 README frames (whose factors follow from the sweeps) the mean disagreement is
0.25 pixels per image for the square, 0.9 for the ellipse and 7 for the heart (its outline is a
fit), and sprite areas agree within 5%. The mean on-pixel fraction over the whole set is 0.042
(0.043 is the mean used to normalise the released images in public loaders). Every sprite lies
inside the frame, as in the release (the notebook's density figure).

Memory: the whole set as uint8 is 3 GB; `packed_dataset` and `load` keep it bit-packed
(`np.packbits` over the 4096 pixels, big-endian bit order): (737280, 512) uint8, 377 MB.
`unpack_jax` turns gathered packed rows into float32 images on device.

Splits: like disentanglement_lib, training uses all 737,280 images. `test_indices` is a fixed
subset used only to report the test ELBO; it is not held out of training.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys
import zipfile

import jax.numpy as jnp
import numpy as np

from vae_jax.data import cache
from vae_jax.errors import UserError
from vae_jax.runtime import files

FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
NUM_IMAGES = math.prod(FACTOR_SIZES)  # 737280
IMAGE_SHAPE = (64, 64, 1)
PACKED_BYTES = 64 * 64 // 8  # 512
RELEASED_FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
RELEASED_URL = "https://github.com/deepmind/dsprites-dataset"
# Stored in the procedural cache; bump it when the geometry below changes, so old caches are
# rendered again.
RENDERER_VERSION = 1
# `test_indices` picks the n images with the smallest splitmix64(index ^ TEST_INDICES_SEED).
TEST_INDICES_SEED = 20170401

# Geometry, in pixels at scale 1 (see the module docstring). Sprite coordinates: u along the
# image columns, v along the rows (down), origin at the reference point.
# The reference point is at pixel 16 (the centre of a sprite patch placed at offset 0) at
# position value 0, and _CENTRE_SPAN pixels further at value 1.
_CENTRE_SPAN = 32.0
_OUTLINE = 0.5  # every shape is grown by this many pixels (all scales) ...
_MIN_COVERED = 61  # ... and a pixel is on when this many of its _SUB ** 2 sub-samples are inside
_SQUARE_HALF_SIDE = 9.55
_ELLIPSE_SEMI_AXES = (12.7, 7.2)  # along u, along v
_HEART_DIAMOND = (7.3, 1.0)  # the lower point: |u| + |v - 1| <= 7.3
_HEART_LOBES = (4.75, -4.3, 4.8)  # two discs at u = +-4.75, v = -4.3, radius 4.8
_SUB = 8  # sub-samples per pixel along each axis, and sub-pixel positions per pixel
_PATCH = 32  # sprites are rendered in a 32x32 patch, reference point at (16, 16) + phase

_STRIDES = tuple(math.prod(FACTOR_SIZES[i + 1:]) for i in range(len(FACTOR_SIZES)))


def factor_values() -> tuple[np.ndarray, ...]:
  """The released latent values of each factor, in FACTOR_NAMES order (float64 arrays).

  Shape is 1, 2, 3 (square, ellipse, heart), as in the release's `latents_values`.
  """
  return (np.array([1.0, 2.0, 3.0]), np.linspace(0.5, 1.0, 6), np.linspace(0.0, 2 * np.pi, 40),
          np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32))


def _check_factors(factors_Nx5) -> np.ndarray:
  f = np.asarray(factors_Nx5)
  if f.ndim != 2 or f.shape[1] != len(FACTOR_SIZES) or not np.issubdtype(f.dtype, np.integer):
    raise ValueError(f"factor indices must be an integer array of shape (N, 5), got "
                     f"{f.dtype} {f.shape}")
  bad = (f < 0) | (f >= np.asarray(FACTOR_SIZES))
  if bad.any():
    row, col = np.argwhere(bad)[0]
    raise ValueError(f"factor index {int(f[row, col])} of {FACTOR_NAMES[col]} (row {row}) is "
                     f"outside [0, {FACTOR_SIZES[col]})")
  return f.astype(np.int64)


def factors_to_index(factors_Nx5) -> np.ndarray:
  """Factor indices (N, 5) -> image indices (N,) int64, the released order (posY fastest)."""
  return _check_factors(factors_Nx5) @ np.asarray(_STRIDES, np.int64)


def index_to_factors(index_N) -> np.ndarray:
  """Image indices (N,) -> factor indices (N, 5) int32; the inverse of `factors_to_index`."""
  rest = np.asarray(index_N)
  if rest.ndim != 1 or not np.issubdtype(rest.dtype, np.integer):
    raise ValueError(f"image indices must be an integer array of shape (N,), got "
                     f"{rest.dtype} {rest.shape}")
  if rest.size and (rest.min() < 0 or rest.max() >= NUM_IMAGES):
    raise ValueError(f"image indices must lie in [0, {NUM_IMAGES})")
  rest = rest.astype(np.int64)
  out_Nx5 = np.empty((rest.shape[0], len(FACTOR_SIZES)), np.int32)
  for d in reversed(range(len(FACTOR_SIZES))):
    rest, out_Nx5[:, d] = np.divmod(rest, FACTOR_SIZES[d])
  return out_Nx5


def sample_factors(n: int, rng) -> np.ndarray:
  """n factor combinations drawn uniformly from the grid, (n, 5) int32.

  Each factor is drawn independently and uniformly, as disentanglement_lib's
  `sample_factors` does. `rng` is a np.random.Generator or a np.random.RandomState.
  """
  if isinstance(rng, np.random.Generator):
    columns = [rng.integers(0, size, size=n) for size in FACTOR_SIZES]
  else:
    columns = [rng.randint(0, size, size=n) for size in FACTOR_SIZES]
  return np.stack(columns, axis=1).astype(np.int32)


def _splitmix64(x_N: np.ndarray) -> np.ndarray:
  """The splitmix64 finaliser (a bijection of uint64), elementwise, wrapping on overflow."""
  z = x_N.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


def test_indices(n: int = 10000) -> np.ndarray:
  """A fixed subset of n image indices (sorted int64) for reporting the test ELBO.

  The n images whose splitmix64(index ^ TEST_INDICES_SEED) are smallest: pure integer
  arithmetic, so the subset is the same on every machine and NumPy version, and
  test_indices(m) is a subset of test_indices(n) for m < n. Training still uses all images
  (as disentanglement_lib does); this subset is for ELBO reporting only.
  """
  if not 1 <= n <= NUM_IMAGES:
    raise ValueError(f"n must lie in [1, {NUM_IMAGES}], got {n}")
  keys_N = _splitmix64(np.arange(NUM_IMAGES, dtype=np.uint64) ^ np.uint64(TEST_INDICES_SEED))
  return np.sort(np.argsort(keys_N, kind="stable")[:n]).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Rendering.


def _box_distance(u, v, half: float):
  """Signed distance from (u, v) to the axis-aligned square of half side `half`."""
  qu, qv = np.abs(u) - half, np.abs(v) - half
  return np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0)


def _inside(shape: int, u, v, scale: float):
  """Whether sprite-coordinate points (u, v) lie inside the shape at `scale`, grown by _OUTLINE."""
  if shape == 0:
    return _box_distance(u, v, _SQUARE_HALF_SIDE * scale) <= _OUTLINE
  if shape == 1:  # the grown ellipse, approximated by an ellipse with both semi-axes grown
    a, b = (axis * scale + _OUTLINE for axis in _ELLIPSE_SEMI_AXES)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0
  half_diagonal, drop = _HEART_DIAMOND
  lobe_u, lobe_v, radius = _HEART_LOBES
  w = v - drop * scale  # the diamond is a square turned by 45 degrees
  point = _box_distance((u + w) * np.sqrt(0.5), (w - u) * np.sqrt(0.5),
                        half_diagonal * scale * np.sqrt(0.5))
  lobes = np.hypot(np.abs(u) - lobe_u * scale, v - lobe_v * scale) - radius * scale
  return np.minimum(point, lobes) <= _OUTLINE


def _patches(shape: int, scale_index: int, orientation_index: int) -> np.ndarray:
  """One sprite at every sub-pixel phase: bool (_SUB, _SUB, 32, 32), [phase y, phase x, row, col].

  At phase (by, bx) the reference point sits at patch coordinate (16 + by/_SUB, 16 + bx/_SUB).
  Because the phase step equals the sub-sample step, every phase's sub-samples lie on one grid
  of spacing 1/_SUB: the shape is tested once on that grid and each pixel's count is a box sum.
  """
  scale = factor_values()[1][scale_index]
  theta = np.mod(factor_values()[2][orientation_index], 2 * np.pi)  # 2 pi -> exactly 0
  size = (_PATCH + 1) * _SUB - 1
  d = (np.arange(size) - (_SUB - 1) + 0.5) / _SUB - _PATCH / 2  # offsets from the reference
  dy, dx = d[:, None], d[None, :]
  cos, sin = np.cos(theta), np.sin(theta)
  # Counterclockwise as displayed (rows point down): sprite (u, v) -> offset
  # (u cos + v sin, -u sin + v cos); inverted here to sample the sprite at each offset.
  inside = _inside(shape, dx * cos - dy * sin, dx * sin + dy * cos, scale).astype(np.int32)
  starts = (_SUB * np.arange(_PATCH)[None, :] - np.arange(_SUB)[:, None] + _SUB - 1)  # (phase, j)
  cum_x = np.zeros((size, size + 1), np.int32)
  np.cumsum(inside, axis=1, out=cum_x[:, 1:])
  win_x = cum_x[:, starts + _SUB] - cum_x[:, starts]  # (y, phase x, col)
  cum_y = np.zeros((size + 1, _SUB, _PATCH), np.int32)
  np.cumsum(win_x, axis=0, out=cum_y[1:])
  counts = cum_y[starts + _SUB] - cum_y[starts]  # (phase y, row, phase x, col)
  return (counts >= _MIN_COVERED).transpose(0, 2, 1, 3)


def _offsets(position_index) -> tuple[np.ndarray, np.ndarray]:
  """Position index -> (whole-pixel patch offset, sub-pixel phase), nearest 1/_SUB pixel."""
  per_step = _CENTRE_SPAN * _SUB / (FACTOR_SIZES[3] - 1)  # in 1/_SUB pixels
  steps = np.rint(np.asarray(position_index) * per_step).astype(np.int64)
  return steps // _SUB, steps % _SUB


def _place(patches: np.ndarray, position_x_N, position_y_N) -> np.ndarray:
  """Puts one sprite's phase patches at the given positions: bool (N, 64, 64)."""
  off = IMAGE_SHAPE[0] - _PATCH  # 32: the largest whole-pixel offset
  canvas = np.zeros((_SUB, _SUB, _PATCH + 2 * off, _PATCH + 2 * off), bool)
  canvas[:, :, off:off + _PATCH, off:off + _PATCH] = patches
  windows = np.lib.stride_tricks.sliding_window_view(canvas, IMAGE_SHAPE[:2], axis=(2, 3))
  ox, bx = _offsets(position_x_N)
  oy, by = _offsets(position_y_N)
  return windows[by, bx, off - oy, off - ox]


def render(factor_indices_Nx5) -> np.ndarray:
  """Procedural dSprites images for any factor combinations: uint8 (N, 64, 64, 1) in {0, 255}.

  `factor_indices_Nx5` holds indices into FACTOR_SIZES (as `index_to_factors` returns).
  Deterministic; each (shape, scale, orientation) sprite is rendered once per call.
  """
  f_Nx5 = _check_factors(factor_indices_Nx5)
  out_NxHxWxC = np.zeros((f_Nx5.shape[0], *IMAGE_SHAPE), np.uint8)
  group_N = (f_Nx5[:, 0] * FACTOR_SIZES[1] + f_Nx5[:, 1]) * FACTOR_SIZES[2] + f_Nx5[:, 2]
  order = np.argsort(group_N, kind="stable")
  groups, starts = np.unique(group_N[order], return_index=True)
  for g, rows in zip(groups, np.split(order, starts[1:])):
    shape_scale, orientation = divmod(int(g), FACTOR_SIZES[2])
    shape, scale = divmod(shape_scale, FACTOR_SIZES[1])
    masks = _place(_patches(shape, scale, orientation), f_Nx5[rows, 3], f_Nx5[rows, 4])
    out_NxHxWxC[rows, :, :, 0] = masks.view(np.uint8) * np.uint8(255)
  return out_NxHxWxC


def packed_dataset() -> tuple[np.ndarray, np.ndarray]:
  """All 737,280 procedural dSprites, bit-packed: (packed (N, 512) uint8, factors (N, 5) int32).

  Row i is image i of the released order; `unpack` / `unpack_jax` turn rows back into images.
  Renders the 720 (shape, scale, orientation) sprites once each, at 8 x 8 sub-pixel phases, and
  places them at the 1024 positions: about 5 s on 2 CPU cores; host memory is the 377 MB result
  plus a few MB.
  """
  per_group = FACTOR_SIZES[3] * FACTOR_SIZES[4]
  position_x = np.repeat(np.arange(FACTOR_SIZES[3]), FACTOR_SIZES[4])
  position_y = np.tile(np.arange(FACTOR_SIZES[4]), FACTOR_SIZES[3])
  packed_NxP = np.empty((NUM_IMAGES, PACKED_BYTES), np.uint8)
  for g in range(NUM_IMAGES // per_group):
    shape_scale, orientation = divmod(g, FACTOR_SIZES[2])
    shape, scale = divmod(shape_scale, FACTOR_SIZES[1])
    masks = _place(_patches(shape, scale, orientation), position_x, position_y)
    packed_NxP[g * per_group:(g + 1) * per_group] = np.packbits(
        masks.reshape(per_group, -1), axis=1)
  return packed_NxP, index_to_factors(np.arange(NUM_IMAGES))


# ---------------------------------------------------------------------------------------------
# Bit packing.


def pack(images_BxHxWxC) -> np.ndarray:
  """Images (B, 64, 64, 1) or (B, 64, 64), any nonzero value = on -> packed (B, 512) uint8."""
  x = np.asarray(images_BxHxWxC)
  if x.shape[1:] not in (IMAGE_SHAPE, IMAGE_SHAPE[:2]):
    raise ValueError(f"expected images of shape (B, 64, 64[, 1]), got {x.shape}")
  return np.packbits(x.reshape(x.shape[0], -1) != 0, axis=1)


def unpack(packed_BxP) -> np.ndarray:
  """Packed rows (B, 512) uint8 -> images uint8 (B, 64, 64, 1) in {0, 255} (NumPy)."""
  p = np.asarray(packed_BxP)
  if p.dtype != np.uint8 or p.shape[-1] != PACKED_BYTES:
    raise ValueError(f"expected packed uint8 rows of {PACKED_BYTES} bytes, got {p.dtype} {p.shape}")
  bits = np.unpackbits(p, axis=-1)
  return (bits * np.uint8(255)).reshape(*p.shape[:-1], *IMAGE_SHAPE)


def unpack_jax(packed_BxP):
  """Packed rows (B, 512) uint8 -> float32 images (B, 64, 64, 1) in {0, 1}, in JAX.

  The bit order matches np.packbits (most significant bit first), so a training step can
  keep the packed set on device, gather a batch of rows and unpack it inside jit.
  """
  packed_BxP = jnp.asarray(packed_BxP, jnp.uint8)
  shifts = jnp.arange(7, -1, -1, dtype=jnp.uint8)
  bits = (packed_BxP[..., None] >> shifts) & jnp.uint8(1)
  return bits.reshape(*packed_BxP.shape[:-1], *IMAGE_SHAPE).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# The released file and the cache.


def released_file(manual_dir: str | os.PathLike | None) -> pathlib.Path | None:
  """The path of the released dSprites file in `manual_dir`, or None when it is not there."""
  if manual_dir is None:
    return None
  path = pathlib.Path(manual_dir) / RELEASED_FILENAME
  return path if path.is_file() else None


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    return np.lib.format.read_array_header_1_0(f)
  if version == (2, 0):
    return np.lib.format.read_array_header_2_0(f)
  raise ValueError(f"unsupported .npy format version {version}")


def read_released(path: str | os.PathLike, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
  """Reads the released .npz: (packed (N, 512) uint8, factors (N, 5) int32), any N.

  `imgs` is streamed from the archive `chunk` images at a time and packed as it comes, so
  host memory stays near the packed size (not the 3 GB of uint8 images); the pickled
  `metadata` entry is never loaded. Factors are `latents_classes[:, 1:]` (colour dropped).
  """
  path = pathlib.Path(path)
  try:
    with zipfile.ZipFile(path) as archive:
      with archive.open("latents_classes.npy") as f:
        classes = np.lib.format.read_array(f, allow_pickle=False)
      with archive.open("imgs.npy") as f:
        shape, fortran, dtype = _read_npy_header(f)
        n = shape[0] if shape else 0
        if (len(shape) != 3 or tuple(shape[1:]) != IMAGE_SHAPE[:2] or dtype != np.uint8
            or fortran):
          raise ValueError(f"imgs is {dtype} {shape}, expected uint8 (N, 64, 64)")
        if classes.shape != (n, 6) or not np.issubdtype(classes.dtype, np.integer):
          raise ValueError(f"latents_classes is {classes.dtype} {classes.shape}, expected "
                           f"integers of shape ({n}, 6)")
        packed_NxP = np.empty((n, PACKED_BYTES), np.uint8)
        pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
        for start in range(0, n, chunk):
          rows = min(chunk, n - start)
          buf = f.read(rows * pixels)
          if len(buf) != rows * pixels:
            raise EOFError(f"imgs ends after {start + len(buf) // pixels} of {n} images")
          packed_NxP[start:start + rows] = np.packbits(
              np.frombuffer(buf, np.uint8).reshape(rows, pixels) != 0, axis=1)
  except cache.UNREADABLE as e:
    raise UserError(f"dSprites file {path} is unreadable ({type(e).__name__}: "
                    f"{str(e)[:200]}); download {RELEASED_FILENAME} again from "
                    f"{RELEASED_URL}") from None
  factors_Nx5 = classes[:, 1:]
  if n and ((factors_Nx5 < 0) | (factors_Nx5 >= np.asarray(FACTOR_SIZES))).any():
    raise UserError(f"dSprites file {path} has latents_classes outside the grid "
                    f"{FACTOR_SIZES}: it is not the dSprites release; download "
                    f"{RELEASED_FILENAME} again from {RELEASED_URL}")
  return packed_NxP, factors_Nx5.astype(np.int32)


def _read_cache(path: pathlib.Path, rebuild: str
                ) -> tuple[np.ndarray, np.ndarray, int] | None:
  """(packed, factors, renderer version) of a cache; None when it is absent, or when it fails
  its check (it does not load, or is not packed uint8 (N, 512) rows with int32 (N, 5) factor
  indices inside the grid): then it is moved aside with one warning line ending in `rebuild`
  (`cache.read_checked`) and the caller makes it again."""
  return cache.read_checked(path, _load_cache, _check_cache, "dSprites cache", rebuild)


def _load_cache(fh) -> tuple[np.ndarray, np.ndarray, int]:
  with np.load(fh, allow_pickle=False) as f:
    return f["packed"], f["factors"], int(f["renderer_version"])


def _check_cache(cached: tuple[np.ndarray, np.ndarray, int]) -> None:
  """ValueError unless `cached` is what `_write_cache` stores."""
  packed, factors, _ = cached
  if (packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != PACKED_BYTES
      or factors.dtype != np.int32 or factors.shape != (packed.shape[0], len(FACTOR_SIZES))):
    raise ValueError(f"packed {packed.dtype} {packed.shape}, factors {factors.dtype} "
                     f"{factors.shape}")
  if len(factors) and ((factors < 0) | (factors >= np.asarray(FACTOR_SIZES))).any():
    raise ValueError(f"factor indices outside the grid {FACTOR_SIZES}")


def _write_cache(path: pathlib.Path, packed: np.ndarray, factors: np.ndarray,
                 version: int) -> None:
  """Writes the cache under a temporary name, then renames it: never half a file (a full disk
  is `files.DiskFull`, naming it)."""
  files.save_npz(path, packed=packed, factors=factors, renderer_version=np.int64(version))


def load(cache_dir: str | pathlib.Path,
         manual_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """dSprites as (packed (N, 512) uint8, factors (N, 5) int32), cached under cache_dir/dsprites/.

  With the released file (RELEASED_FILENAME) in `manual_dir` it is read (any N, factors from
  its `latents_classes`) and cached as `released.npz`; otherwise procedural dSprites are
  rendered and cached as `procedural.npz`. Later calls read the cache (a procedural cache
  from another RENDERER_VERSION is rendered again). A cache that fails its check is moved to
  cache_dir/dsprites/damaged/ with one warning line and made again from its source; an
  unreadable released file (the user's, which this cannot remake) raises UserError.
  """
  root = pathlib.Path(cache_dir) / "dsprites"
  real = released_file(manual_dir)
  if real is not None:
    path = root / "released.npz"
    cached = _read_cache(path, f"reading {real} again")
    if cached is not None:
      return cached[:2]
    print(f"Reading dSprites from {real}; later calls read the cache {path}", file=sys.stderr,
          flush=True)
    packed, factors = read_released(real)
    _write_cache(path, packed, factors, version=0)
    return packed, factors
  if manual_dir is not None:
    print(f"No {RELEASED_FILENAME} in {manual_dir}: using procedural dSprites", file=sys.stderr,
          flush=True)
  path = root / "procedural.npz"
  cached = _read_cache(path, "rendering it again")
  if cached is not None:
    packed, factors, version = cached
    if version == RENDERER_VERSION:
      return packed, factors
    print(f"{path} was rendered by renderer version {version}, now {RENDERER_VERSION}: "
          "rendering again", file=sys.stderr, flush=True)
  print(f"Rendering procedural dSprites ({NUM_IMAGES:,} images); later calls read the cache "
        f"{path}", file=sys.stderr, flush=True)
  packed, factors = packed_dataset()
  _write_cache(path, packed, factors, version=RENDERER_VERSION)
  return packed, factors
