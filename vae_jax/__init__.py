"""vae-jax: autoencoders, VAEs and beta-VAEs in JAX / Flax NNX.

The Python API (`vae_jax/api.py`; the README's "Python API" section):

    run = vae_jax.load("runs/vae")                   # a finished run: config, model, dataset
    results = vae_jax.train("configs/mnist_vae.py", "runs/vae")   # launch.py from Python

`import vae_jax` stays cheap: JAX, Flax and the rest load on first use of these names. The
training loop itself is the module `vae_jax.trainer`.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Run", "load", "train"]


def __getattr__(name: str):
  if name in __all__:
    from vae_jax import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f"module 'vae_jax' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *__all__])
