"""The stride-2 convolutions of the conv models, with a lowering chosen per backend.

`ConvEncoder` halves the image with SAME-padded stride-2 convolutions and `ConvDecoder`
doubles it back with stride-2 transposed convolutions (`lax.conv_transpose` with
`transpose_kernel=False`, as `nnx.ConvTranspose` computes it). Both keep flax's parameters
(kernel (k, k, in, out) and bias): only how the product is computed differs.

Lowerings (`config.model.conv_lowering`):
- "xla": `lax.conv_general_dilated` / `lax.conv_transpose`. On a GPU that is cuDNN.
- "matmul": the same function as one matrix product per layer, for even kernels k = 2t. The
  padded input is rearranged space-to-depth (each 2x2 block of pixels becomes 4C channels),
  which turns the k x k stride-2 convolution into a t x t stride-1 one; its t^2 shifted views
  are concatenated (unit-stride slices, no gathers) and multiplied by the reshaped kernel.
  The transposed convolution is this map's adjoint (written out: one matmul with the
  transposed kernel, the views added back in place, depth-to-space) for the kernel flipped in
  space with its channels swapped, which is exactly `lax.conv_transpose`'s SAME padding; its
  gradients are again matrix products, pads and slices.
- "auto" (default): "matmul" on the CPU for even kernels, "xla" elsewhere. XLA:CPU runs some
  of the convolutions' gradients far below its matmul rate (the first transposed
  convolution's kernel gradient of `configs/mnist_conv.py` at ~5 GFLOP/s), and the
  convolutions inside the epoch's `lax.scan` slower still; benchmarks/README.md has the
  measurements. Results agree to float rounding (tests/test_convolutions.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

LOWERINGS = ("auto", "xla", "matmul")
_DIMS = ("NHWC", "HWIO", "NHWC")


def resolve(lowering: str, kernel_size: int) -> str:
  """The lowering "auto" stands for on this backend, or `lowering` itself."""
  if lowering != "auto":
    return lowering
  return "matmul" if jax.default_backend() == "cpu" and kernel_size % 2 == 0 else "xla"


def _same_padding(size: int, kernel: int) -> tuple[int, int]:
  """(low, high) SAME padding of a stride-2 convolution, as XLA computes it."""
  total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)
  return total // 2, total - total // 2


def _blocks(kernel):
  """kernel (2t, 2t, C, O) -> (4 t^2 C, O): kernel[2p + q, 2p' + q'] multiplies the
  space-to-depth block at offset (p, p') and phase (q, q')."""
  k, _, C, O = kernel.shape
  t = k // 2
  return kernel.reshape(t, 2, t, 2, C, O).transpose(0, 2, 1, 3, 4, 5).reshape(4 * t * t * C, O)


def _matmul_conv(x_BxHxWxC, kernel):
  """SAME stride-2 convolution by space-to-depth and one matmul (even kernel 2t)."""
  k, _, C, O = kernel.shape
  t = k // 2
  B, H, W, _ = x_BxHxWxC.shape
  Ho, Wo = -(-H // 2), -(-W // 2)
  x = jnp.pad(x_BxHxWxC, ((0, 0), _same_padding(H, k), _same_padding(W, k), (0, 0)))
  # With an even kernel the padded size is even: H + 2t - 2, or H + 2t - 1 for odd H.
  Hp, Wp = x.shape[1] // 2, x.shape[2] // 2
  s = x.reshape(B, Hp, 2, Wp, 2, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, 4 * C)
  cols = jnp.concatenate([s[:, i:i + Ho, j:j + Wo] for i in range(t) for j in range(t)], -1)
  y = jnp.dot(cols.reshape(B * Ho * Wo, 4 * t * t * C), _blocks(kernel).astype(cols.dtype))
  return y.reshape(B, Ho, Wo, O)


def _matmul_conv_adjoint(g_BxHoxWoxO, kernel, H: int, W: int):
  """The adjoint of `_matmul_conv(., kernel)` on (B, H, W, C) inputs, applied to g: one
  matmul with the transposed kernel, its t^2 views added back in place (pads), then
  depth-to-space and the padding cropped."""
  k, _, C, O = kernel.shape
  t = k // 2
  B, Ho, Wo, _ = g_BxHoxWoxO.shape
  (lo_h, hi_h), (lo_w, hi_w) = _same_padding(H, k), _same_padding(W, k)
  Hp, Wp = (H + lo_h + hi_h) // 2, (W + lo_w + hi_w) // 2
  cols = jnp.dot(g_BxHoxWoxO.reshape(B * Ho * Wo, O), _blocks(kernel).T.astype(g_BxHoxWoxO.dtype))
  cols = cols.reshape(B, Ho, Wo, t * t, 4 * C)
  s = sum(jnp.pad(cols[:, :, :, i * t + j], ((0, 0), (i, Hp - Ho - i), (j, Wp - Wo - j), (0, 0)))
          for i in range(t) for j in range(t))
  x = s.reshape(B, Hp, Wp, 2, 2, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, 2 * Hp, 2 * Wp, C)
  return x[:, lo_h:lo_h + H, lo_w:lo_w + W]


def conv(x_BxHxWxC, kernel, lowering: str):
  """SAME-padded stride-2 convolution; kernel (k, k, C, O); (B, ceil(H/2), ceil(W/2), O)."""
  if resolve(lowering, kernel.shape[0]) == "matmul":
    return _matmul_conv(x_BxHxWxC, kernel)
  return lax.conv_general_dilated(x_BxHxWxC, kernel.astype(x_BxHxWxC.dtype), (2, 2), "SAME",
                                  dimension_numbers=_DIMS)


def conv_transpose(x_BxHxWxC, kernel, lowering: str):
  """`lax.conv_transpose(x, kernel, (2, 2), "SAME")`; kernel (k, k, C, O); (B, 2H, 2W, O)."""
  if resolve(lowering, kernel.shape[0]) == "matmul":
    _, H, W, _ = x_BxHxWxC.shape
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)  # (k, k, O, C)
    return _matmul_conv_adjoint(x_BxHxWxC, flipped, 2 * H, 2 * W)
  return lax.conv_transpose(x_BxHxWxC, kernel.astype(x_BxHxWxC.dtype), (2, 2), "SAME",
                            dimension_numbers=_DIMS)
