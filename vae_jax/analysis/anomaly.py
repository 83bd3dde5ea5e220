"""Anomaly detection with a trained autoencoder: one score per image, and ROC AUC.

An image the model reconstructs or explains badly is scored as anomalous:

    "rec"       reconstruction NLL -log p(x | z = mean of q(z|x)) in nats (the AE's natural
                score: Bernoulli cross-entropy, or the Gaussian / Laplace NLL)
    "neg_elbo"  -ELBO, one reparameterised sample per image (VAE)
    "iwae"      -L_k, the k-sample importance-weighted bound on -log p(x) (VAE; see
                `marginal_likelihood.py`)

`auroc` is the area under the ROC curve by the rank statistic (Mann-Whitney U): the
probability that a random anomalous image scores above a random normal one, ties counting
one half. Written in NumPy; no scikit-learn needed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_jax import decoder_likelihoods, marginal_likelihood, objectives, rng
from vae_jax.figures import grids

METHODS = ("rec", "neg_elbo", "iwae")


def default_method(model) -> str:
  """"iwae" for a stochastic family (its best likelihood estimate), "rec" for an AE (it has no
  other)."""
  return "iwae" if model.stochastic else "rec"


def auroc(scores, is_anomaly) -> float:
  """ROC AUC of `scores` (higher = more anomalous) against boolean labels, ties averaged.

  AUROC = (R - P (P + 1) / 2) / (P N), with R the sum of the anomalies' ranks among all
  scores (1-based, tied scores sharing their mean rank), P anomalies and N normal images.
  """
  s = np.asarray(scores, np.float64).ravel()
  pos = np.asarray(is_anomaly, bool).ravel()
  if s.shape != pos.shape:
    raise ValueError(f"{s.shape[0]} scores but {pos.shape[0]} labels")
  n_pos, n_neg = int(pos.sum()), int((~pos).sum())
  if n_pos == 0 or n_neg == 0:
    raise ValueError("AUROC needs both anomalous and normal images")
  _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
  last = np.cumsum(counts)  # rank of each distinct value's last occurrence
  mean_rank = last - (counts - 1) / 2.0
  rank_sum = mean_rank[inverse][pos].sum()
  return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@nnx.jit
def _rec(model, x):
  mean, _ = model.encode(x)
  return decoder_likelihoods.nll(model.likelihood, model.decode(mean), model.log_scale[...], x)


@nnx.jit
def _neg_elbo(model, x, key):
  eps = jax.random.normal(key, (x.shape[0], model.noise_dim))
  return objectives.eval_metrics(model, x, eps, 1.0)["neg_elbo"]


def scores(model, images_u8: np.ndarray, method: str | None = None, *, key=None, k: int = 100,
           batch: int = 1000) -> np.ndarray:
  """Anomaly score of each uint8 image (N, H, W, C): shape (N,), in nats, higher = stranger.

  Args:
    model: a trained model (`models.FAMILIES`).
    images_u8: images prepared as the model's training data were (same binarisation).
    method: one of METHODS; None = `default_method(model)`.
    key: PRNG key for "neg_elbo" and "iwae" (default `jax.random.key(rng.ANALYSIS_SEED)`).
    k: importance samples for "iwae".
    batch: images per compiled call.
  """
  method = method or default_method(model)
  if method not in METHODS:
    raise ValueError(f"unknown score {method!r}; expected one of {METHODS}")
  if method != "rec" and not model.stochastic:
    raise ValueError(f"score {method!r} needs a VAE (a family with q(z|x) and p(z)); "
                     f"model.name={model.name!r} has only 'rec'")
  key = jax.random.key(rng.ANALYSIS_SEED) if key is None else key
  x_all = np.asarray(images_u8, np.float32) / 255.0
  with jax.default_matmul_precision("float32"):
    if method == "iwae":
      model_fn, params = marginal_likelihood.autoencoder_latents(model)
      return -np.asarray(marginal_likelihood.iwae_log_px(model_fn, params, jnp.asarray(x_all), key,
                                                num_samples=k), np.float64)
    out = []
    for i in range(0, len(x_all), batch):
      x = jnp.asarray(x_all[i:i + batch])
      out.append(_rec(model, x) if method == "rec"
                 else _neg_elbo(model, x, rng.chunk_key(key, i)))
  return np.concatenate([np.asarray(o, np.float64) for o in out])


def save_extremes(path, images_u8: np.ndarray, scores_N: np.ndarray, n: int = 12,
                  title: str = "Most (top) and least (bottom) anomalous test images") -> str:
  """Grid of the n highest-scoring images above the n lowest-scoring ones."""
  order = np.argsort(np.asarray(scores_N))
  most, least = order[::-1][:n], order[:n]
  images = np.concatenate([images_u8[most], images_u8[least]]).astype(np.float32) / 255.0
  return grids.save_grid(path, images, n, title, ["most", "least"])
