"""vae-jax: autoencoders, VAEs and beta-VAEs in JAX / Flax NNX.

The Python API (`vae_jax/api.py`; the README's "Python API" section):

    run = vae_jax.load("runs/vae")                   # a finished run: config, model, dataset
    results = vae_jax.train("configs/mnist_vae.py", "runs/vae")   # launch.py from Python

`import vae_jax` stays cheap: JAX, Flax and the rest load on first use of these names.
"""

from __future__ import annotations

import sys
import types

__version__ = "0.1.0"
__all__ = ["Run", "load", "train"]


class _CallableTrainModule(types.ModuleType):
  """`vae_jax/train.py`, callable as `vae_jax.train(config, workdir, ...)` = `api.train`.

  A package's attribute named like one of its submodules becomes that submodule as soon as
  anything imports it (`from vae_jax import train` in the launcher), so a plain function
  `vae_jax.train` would be replaced by the module there. Instead the module itself is made
  callable; `train.train_and_evaluate` and every other use of the module are unchanged.
  """

  def __call__(self, config, workdir, **kwargs):
    from vae_jax import api  # pylint: disable=g-import-not-at-top
    return api.train(config, workdir, **kwargs)


class _Package(types.ModuleType):
  """This package, whose `train` submodule is made callable when the import system sets it."""

  def __setattr__(self, name, value):
    if name == "train" and type(value) is types.ModuleType:  # pylint: disable=unidiomatic-typecheck
      value.__class__ = _CallableTrainModule
    super().__setattr__(name, value)


def __getattr__(name: str):
  if name in ("Run", "load"):
    from vae_jax import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  if name == "train":
    import vae_jax.train  # pylint: disable=g-import-not-at-top,redefined-outer-name
    return sys.modules["vae_jax.train"]
  raise AttributeError(f"module 'vae_jax' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *__all__])


sys.modules[__name__].__class__ = _Package
