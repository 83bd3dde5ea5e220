"""Image preprocessing, applied once when a split is prepared and cached with it: centre crop,
then resize, then colour (`config.data.crop`, `.resize`, `.color`).

Cropping, resizing and colour conversion are Pillow's. Resizing is its bilinear filter, which
widens its footprint when it shrinks an image (antialiasing), as torchvision's
`transforms.Resize` does through Pillow: CelebA with crop=(148,) and resize=(64, 64) matches the
`CenterCrop(148), Resize(64)` pipeline of the β-VAE literature pixel for pixel, except that a
crop box sits at ((H - h) // 2, (W - w) // 2) (torchvision rounds half offsets to even; equal
for CelebA's 218 x 178 images). Grey is ITU-R 601-2 luma (Pillow's "L": 0.299 R + 0.587 G +
0.114 B); RGB from grey repeats the grey level.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import numpy as np
from PIL import Image

from vae_jax import checks
from vae_jax.errors import UserError

# config.data.color -> what the prepared images hold.
COLORS = {
    "keep": "the source's channels (a folder of grey and colour images becomes RGB)",
    "grey": "one channel, ITU-R 601-2 luma",
    "rgb": "three channels (a grey image's level repeated)",
}
_MODES = {"grey": "L", "rgb": "RGB"}
_THREADS = os.cpu_count() or 1  # Pillow releases the GIL while it decodes and resizes


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """What is done to every image of a split; the identity by default."""
  crop: tuple[int, ...] = ()  # (), (size,), (height, width) or (top, left, height, width)
  resize: tuple[int, ...] = ()  # (), (size,) or (height, width)
  color: str = "keep"

  @classmethod
  def from_config(cls, data_config) -> "Preprocessing":
    return cls(tuple(int(v) for v in data_config.crop),
               tuple(int(v) for v in data_config.resize), str(data_config.color))

  @property
  def identity(self) -> bool:
    return not self.crop and not self.resize and self.color == "keep"

  def key(self) -> dict:
    """What the preprocessing does, for cache keys: equal for spellings of the same thing
    (crop=(64,) and (64, 64); resize=(32,) and (32, 32))."""
    crop = (self.crop[0],) * 2 if len(self.crop) == 1 else self.crop
    return {"crop": list(crop), "resize": list(self.size or ()), "color": self.color}

  def tag(self) -> str:
    """A readable name for cache folders: "crop148x148-resize64x64-rgb" ("" for the
    identity)."""
    k = self.key()
    parts = []
    if k["crop"]:
      parts.append("crop" + "x".join(map(str, k["crop"])))
    if self.resize:
      parts.append("resize" + "x".join(map(str, self.size)))
    if self.color != "keep":
      parts.append(self.color)
    return "-".join(parts)

  @property
  def size(self) -> tuple[int, int] | None:
    """The (height, width) images are resized to; None to keep their size."""
    if not self.resize:
      return None
    return (self.resize[0],) * 2 if len(self.resize) == 1 else tuple(self.resize)

  def box(self, height: int, width: int, where: str) -> tuple[int, int, int, int] | None:
    """The crop as (top, left, height, width) inside a height x width image; None for no crop.
    A crop that does not fit is the user's mistake, named in one line."""
    c = self.crop
    if not c:
      return None
    if len(c) == 4:
      top, left, h, w = c
    else:
      h, w = (c[0], c[0]) if len(c) == 1 else c
      top, left = (height - h) // 2, (width - w) // 2
    if top < 0 or left < 0 or top + h > height or left + w > width:
      checks.fail("data.crop", c, f"a box inside the images: {where} is {height} x {width} "
                  "(height x width)")
    return top, left, h, w

  def apply_pil(self, img: Image.Image, where: str) -> np.ndarray:
    """One Pillow image (mode "L" or "RGB") -> uint8 (H, W, C), cropped, resized, converted."""
    box = self.box(img.height, img.width, where)
    if box is not None:
      top, left, h, w = box
      img = img.crop((left, top, left + w, top + h))
    size = self.size
    if size is not None and (img.height, img.width) != size:
      img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    mode = _MODES.get(self.color, img.mode)
    if img.mode != mode:
      img = img.convert(mode)
    out = np.asarray(img, np.uint8)
    return out[..., None] if out.ndim == 2 else out

  def apply(self, images_NxHxWxC: np.ndarray, where: str) -> np.ndarray:
    """uint8 (N, H, W, C), C = 1 or 3 -> the preprocessed uint8 (N, H', W', C')."""
    if self.identity:
      return images_NxHxWxC
    if images_NxHxWxC.shape[-1] not in (1, 3):
      raise UserError(f"the images of {where} have {images_NxHxWxC.shape[-1]} channels: "
                      "preprocessing (config.data.crop, .resize, .color) needs 1 or 3")
    mode = "L" if images_NxHxWxC.shape[-1] == 1 else "RGB"

    def one(x):
      return self.apply_pil(Image.fromarray(x[..., 0] if mode == "L" else x, mode), where)

    return np.stack(map_images(one, images_NxHxWxC))


def map_images(fn, items) -> list:
  """[fn(x) for x in items], in threads when there are many (Pillow's work runs outside the
  GIL); the first exception is raised."""
  if len(items) < 256 or _THREADS == 1:
    return [fn(x) for x in items]
  pool = concurrent.futures.ThreadPoolExecutor(_THREADS)
  try:
    return list(pool.map(fn, items))
  finally:  # after an error, the images not yet started are dropped, not decoded
    pool.shutdown(wait=True, cancel_futures=True)


def check_config(config) -> None:
  """config.data.crop, .resize and .color are well-formed (whether a crop fits the images is
  known when they are read)."""
  crop = checks.get(config, "data.crop")
  if (not isinstance(crop, (tuple, list)) or len(crop) not in (0, 1, 2, 4)
      or any(isinstance(v, bool) or not isinstance(v, int) for v in crop)
      or any(v < 1 for v in crop[-2:]) or any(v < 0 for v in crop)):
    checks.fail("data.crop", crop, "() (no crop), (size,) (a centred square), (height, width) "
                "(a centred box) or (top, left, height, width), sizes >= 1")
  resize = checks.get(config, "data.resize")
  if (not isinstance(resize, (tuple, list)) or len(resize) not in (0, 1, 2)
      or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in resize)):
    checks.fail("data.resize", resize, "() (keep the size), (size,) (a square) or "
                "(height, width), sizes >= 1")
  checks.choice(config, "data.color", COLORS)
