"""The matmul lowering of the stride-2 convolutions computes XLA's convolutions: the same values
and gradients (float rounding), on every shape the conv models use, with the same parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.helpers import tiny_config
from vae_jax import convolutions, models, objectives, validate, workdir
from vae_jax.errors import UserError

# (height, width, in channels, out channels, kernel): MNIST's first layer, an odd size (7 -> 4,
# whose SAME padding is uneven), non-square odd images, kernels 2, 4 and 6.
_SHAPES = [(28, 28, 1, 16, 4), (7, 7, 32, 16, 4), (7, 8, 3, 5, 2), (9, 11, 3, 4, 6)]


def _close(a, b, scale):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=3e-6 * scale)


@pytest.mark.parametrize("shape", _SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_matmul_lowering_equals_xla_values_and_gradients(shape, op):
  H, W, C, O, k = shape
  kx, kw, kc = jax.random.split(jax.random.key(H * W + k), 3)
  x = jax.random.normal(kx, (2, H, W, C))
  w = jax.random.normal(kw, (k, k, C, O)) / (k * np.sqrt(C))
  f = getattr(convolutions, op)
  # A cotangent that weights every output position differently.
  ct = jax.random.normal(kc, jax.eval_shape(lambda: f(x, w, "xla")).shape)

  @jax.jit
  def both(x, w):
    return {low: (f(x, w, low), jax.grad(lambda x, w: jnp.sum(ct * f(x, w, low)), (0, 1))(x, w))
            for low in ("xla", "matmul")}

  out = both(x, w)
  (ref, grads_ref), (got, grads) = out["xla"], out["matmul"]
  expected = (2, -(-H // 2), -(-W // 2), O) if op == "conv" else (2, 2 * H, 2 * W, O)
  assert ref.shape == got.shape == expected
  scale = float(jnp.abs(ref).max())
  assert scale > 0.1  # a real signal, not zeros compared with zeros
  _close(got, ref, scale)
  for g_ref, g in zip(grads_ref, grads):
    _close(g, g_ref, float(jnp.abs(g_ref).max()))


def test_matmul_lowering_in_bfloat16_stays_close():
  x = jax.random.normal(jax.random.key(0), (4, 14, 14, 16))
  w = jax.random.normal(jax.random.key(1), (4, 4, 16, 32)) / 16
  for op in ("conv", "conv_transpose"):
    f = getattr(convolutions, op)
    ref = f(x, w, "xla")
    got = f(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), "matmul")
    assert got.dtype == jnp.bfloat16
    rel = float(jnp.abs(got.astype(jnp.float32) - ref).max() / jnp.abs(ref).max())
    assert rel < 2e-2  # bfloat16's 8 significant bits, summed over 256 products


def test_auto_is_matmul_on_the_cpu_for_even_kernels_only():
  assert jax.default_backend() == "cpu"
  assert convolutions.resolve("auto", 4) == "matmul"
  assert convolutions.resolve("auto", 3) == "xla"
  assert convolutions.resolve("xla", 4) == "xla"
  assert convolutions.resolve("matmul", 2) == "matmul"


def _conv_config(lowering, **kw):
  return tiny_config(**{"model.architecture": "conv", "model.conv_channels": (4, 8),
                        "model.kernel_size": 4, "model.hidden_sizes": (16,),
                        "model.conv_lowering": lowering, **kw})


def test_the_conv_model_keeps_its_parameters_and_its_loss_under_either_lowering():
  """The same parameter tree (names and shapes) and, on the same parameters, the same loss and
  gradients, so checkpoints of either lowering restore into the other."""
  shape = (12, 12, 1)  # 12 -> 6 -> 3 and back
  _, params, rest = models.init_params(_conv_config("xla"), shape)  # eager, as a run does
  # The matmul model's parameter tree, traced without running its initialisation.
  abstract = jax.eval_shape(lambda: models.init_params(_conv_config("matmul"), shape)[1])
  assert jax.tree.structure(abstract) == jax.tree.structure(params)
  assert [a.shape for a in jax.tree.leaves(abstract)] == [a.shape for a in jax.tree.leaves(params)]
  graphdefs = {low: models.compute_graphdef(_conv_config(low), shape) for low in ("xla", "matmul")}
  x = (jax.random.uniform(jax.random.key(0), (8, *shape)) < 0.3).astype(jnp.float32)
  eps = jax.random.normal(jax.random.key(1), (8, 4))  # latent_dim 4
  hparams = {"beta": 1.0, "kl_warmup_steps": 0, "free_bits": 0.0}
  out = {}
  for low, graphdef in graphdefs.items():
    def loss(p, graphdef=graphdef):
      return objectives.loss_fn(nnx.merge(graphdef, p, rest), x, x, eps, hparams, 0)[0]
    out[low] = jax.jit(jax.value_and_grad(loss))(params)  # the same parameters in both
  assert float(out["xla"][0]) > 50  # a random model: ~0.7 nats for each of 144 pixels
  np.testing.assert_allclose(float(out["matmul"][0]), float(out["xla"][0]), rtol=1e-6)
  for g_ref, g in zip(jax.tree.leaves(out["xla"][1]), jax.tree.leaves(out["matmul"][1])):
    _close(g, g_ref, float(jnp.abs(g_ref).max()))


def test_the_lowering_is_validated_and_may_change_on_resume():
  validate.validate(_conv_config("matmul"))
  with pytest.raises(UserError, match=r"model.conv_lowering='cudnn' is invalid.*'auto'"):
    validate.validate(_conv_config("cudnn"))
  with pytest.raises(UserError, match=r"model.conv_lowering='matmul'.*odd model.kernel_size=3"):
    validate.validate(_conv_config("matmul", **{"model.kernel_size": 3}))
  validate.validate(_conv_config("auto", **{"model.kernel_size": 3}))  # auto falls back to xla
  saved = workdir.resolved_config(_conv_config("xla"))
  assert workdir.config_differences(saved, workdir.resolved_config(_conv_config("auto"))) == []
  assert workdir.config_differences(
      saved, workdir.resolved_config(_conv_config("auto", **{"model.kernel_size": 2}))) == [
          "model.kernel_size"]
