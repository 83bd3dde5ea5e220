"""Benchmark: the dSprites MLP encoder's first layer, dense vs sparse formulations, one process.

    python -m benchmarks.sparse_first_layer [--batch_sizes 128 256 2048] [--hidden 512 1200]
                                            [--repeats 7] [--train_steps 100]

dSprites images are 4.2% ones (at most 400 of 4,096 pixels), so the first layer x @ W of the
MLP encoder (4096 -> H) could be a sum of the weight rows of the lit pixels, and its weight
gradient x^T @ dy a scatter-add of dy into those rows. This times, on real dSprites images (a
random batch of the built-in set, `vae_jax.data`), the first layer's forward + backward as
training needs it: `value_and_grad` with respect to the weight of vdot(x @ W + b, g) for a
fixed random cotangent g (B, H); the gradient with respect to the images is never needed. The
formulations ("variants"):

  dense                x @ W + b, autodiff: what `nnx.Linear` does today.
  gather_scatter       the lit pixels' indices, extracted from x inside the step and padded to
                       K = the largest lit count in the whole dataset (index 4096: a zero row
                       appended to W); the forward sums the K gathered rows (a scan over the K
                       slots, one (B, H) gather each); autodiff turns that into a scatter-add
                       per slot for the weight gradient. Exact only for rows with <= K lit
                       pixels (all of dSprites).
  gather_scatter_given the same with the indices handed in precomputed: the extraction free,
                       a lower bound on what the gather path can cost.
  gather_segment_sum   the same forward; the weight gradient one `jax.ops.segment_sum` of the
                       B*K updates (materialises them: skipped where that exceeds 1 GiB).
  gather_dense_bwd     the same forward; the weight gradient the dense x^T @ dy (custom_vjp).
  bcoo                 `jax.experimental.sparse.BCOO.fromdense(x, nse=B*K) @ W` (autodiff
                       through BCOO; materialises (nse, H): skipped above 1 GiB).
  edges_dense_bwd      row-edge ("Abel summation") form: x @ W = t @ S where t = x - x shifted
                       up one image row (nonzero only where a column of the sprite starts or
                       ends: at most 54 per dSprites image, 31 on average, against 173 lit
                       pixels) and S = the cumulative sum of W down each image column; the
                       forward gathers S at the edges (a while loop over chunks of slots, so
                       exact for any input), the weight gradient is the dense x^T @ dy.
  edges_scatter        the same forward; the gradient scattered into dS at the edges, then
                       summed back up each column (dW = reverse cumsum of dS).
  bf16_split3          dense matmuls in bfloat16 with float32 accumulation, exact to float32
                       rounding: 0/1 inputs are exact in bfloat16, W is split into three
                       bfloat16 parts (hi + mid + lo = W to 24 bits), three products forward;
                       dy likewise split for x^T @ dy (custom_vjp), three backward.
  bf16                 one bfloat16 product each way (NOT exact: W rounded to 8 bits), for scale.

Every variant's loss and weight gradient are compared with the dense ones ("max_abs_error",
next to the largest gradient entry). The timed calls run interleaved, variant after variant
within each (B, H) (A, B, C, ..., A, B, C, ...), so a slow spell of a shared machine hits all
of them alike; the first round is dropped and the median of the others reported, as wall time
and as this process's CPU time (all threads). "ratio_to_dense" is dense's median wall time
over the variant's (> 1: the variant is faster).

`--train_steps N` also times the real training epoch (`step.build_train_epoch`: the scanned
train step with the packed-batch unpacking, as the launcher compiles it) of
configs/dsprites_vae.py and configs/dsprites_chen.py:cpu on the first N batches, and
extrapolates to one epoch of 737,280 images (0: skip).

Prints one JSON object, with the CPU model, jax version, load average and the CPU seconds this
process used ("cpu_seconds_total": what every number here cost).

Result, 2026-12-05, the 2-vCPU Intel Xeon (Sapphire Rapids flags, AVX-512, AMX), jax 0.10.2,
shared with two nice'd dSprites trainings and other jobs (load average 15-18): no exact
formulation reaches dense at the training batch sizes. Best ratios at B = 128 / 256:
gather_scatter_given 0.89 / 0.83 at H = 512, 0.62 / 0.72 at 1200 (the extraction not even
counted), edges_scatter 0.57-0.87, gather_dense_bwd 0.64-0.80, gather_scatter 0.49-0.65,
bf16_split3 0.34-0.49, segment_sum and BCOO 0.12-0.22; at B = 2048 the edge forms break even (0.89-1.13). XLA:CPU runs the dense
product near its matmul rate, while its gathers, scatters and the passes over W run at a few
GB/s. Plain bfloat16 (0.85-1.6x) is not exact (weight-gradient errors 0.3% of the largest
entry). The dense layer stays; 473 CPU-seconds (0.13 CPU-hours) for the whole run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import time

import numpy as np

from benchmarks import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
D, ROWS, COLS = 4096, 64, 64  # dSprites: 64 x 64 x 1, flattened row-major
_GIB = 1 << 30


# --- the formulations -----------------------------------------------------------------------

def build_variants(K: int):
  """{name: layer(x, W, b) -> y} and the index extraction, for padded lit counts K."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  from jax.experimental import sparse

  def lit_indices(x):
    """(B, K) int32: each row's lit pixels in order, padded with D (a zero row of W)."""
    return jax.vmap(lambda r: jnp.nonzero(r, size=K, fill_value=D)[0].astype(jnp.int32))(x)

  def with_zero_row(W):
    return jnp.concatenate([W, jnp.zeros((1, W.shape[1]), W.dtype)])

  def gather_sum(We, idx):
    """sum_k We[idx[:, k]]: one (B, H) gather per slot (XLA:CPU gathers a whole (B, K, H) block
    several times slower)."""
    step = lambda acc, col: (acc + We.at[col].get(mode="promise_in_bounds"), None)
    return jax.lax.scan(step, jnp.zeros((idx.shape[0], We.shape[1]), We.dtype), idx.T,
                        unroll=16)[0]

  def dense(x, W, b):
    return x @ W + b

  def gather_scatter(x, W, b):
    return gather_sum(with_zero_row(W), lit_indices(x)) + b

  def gather_scatter_given(idx, W, b):  # takes the indices, not x
    return gather_sum(with_zero_row(W), idx) + b

  def custom_bwd(forward, weight_grad):
    """y = forward(x, W) with dL/dW = weight_grad(x, W, dy) and dL/dx = dy @ W^T."""
    @jax.custom_vjp
    def f(x, W):
      return forward(x, W)

    f.defvjp(lambda x, W: (forward(x, W), (x, W)),
             lambda res, dy: (dy @ res[1].T, weight_grad(res[0], res[1], dy)))
    return lambda x, W, b: f(x, W) + b

  gather_fwd = lambda x, W: gather_sum(with_zero_row(W), lit_indices(x))
  dense_wgrad = lambda x, W, dy: x.T @ dy

  def segsum_wgrad(x, W, dy):
    idx = lit_indices(x)
    B, H = dy.shape
    upd = jnp.broadcast_to(dy[:, None, :], (B, K, H)).reshape(B * K, H)
    return jax.ops.segment_sum(upd, idx.reshape(-1), num_segments=D + 1)[:D]

  def bcoo(x, W, b):
    return sparse.BCOO.fromdense(x, nse=x.shape[0] * K) @ W + b

  # Row-edge form. t[p] = x[p] - x[p + COLS] (0 past the last row), S = cumsum of W down each
  # image column: sum_p t[p] S[p] = sum_p x[p] (S[p] - S[p - COLS]) = sum_p x[p] W[p].
  def edges_of(x):
    return x - jnp.concatenate([x[:, COLS:], jnp.zeros((x.shape[0], COLS), x.dtype)], axis=1)

  def column_cumsum(W, reverse=False):
    H = W.shape[1]
    Wr = W.reshape(ROWS, COLS * H)  # row r: the weights of image row r, (COLS * H) contiguous
    if reverse:
      body = lambda i, c: jax.lax.dynamic_update_index_in_dim(
          c, c[ROWS - i] + c[ROWS - 1 - i], ROWS - 1 - i, 0)
    else:
      body = lambda i, c: jax.lax.dynamic_update_index_in_dim(c, c[i - 1] + c[i], i, 0)
    return jax.lax.fori_loop(1, ROWS, body, Wr).reshape(D, H)

  def nonzero_words(v):
    """32-bit words of the nonzero mask of each row of v, their popcounts and inclusive
    prefix counts (an exact float32 matmul: counts <= 4096); (B, D / 32) each."""
    B = v.shape[0]
    bits = (v != 0).reshape(B, -1, 32).astype(jnp.uint32) << jnp.arange(32, dtype=jnp.uint32)
    words = jnp.sum(bits, axis=2, dtype=jnp.uint32)  # disjoint bits: the sum is the OR
    cnt = jax.lax.population_count(words).astype(jnp.int32)
    nw = words.shape[1]
    incl = (cnt.astype(jnp.float32) @ jnp.triu(jnp.ones((nw, nw), jnp.float32))).astype(jnp.int32)
    return words, cnt, incl

  def nonzero_slots(words, cnt, incl, first, n):
    """Positions of the nonzeros first .. first+n-1 of each row, (B, n) (D past the row's
    count): the word by its prefix count, the bit by binary search on popcounts. No scatter
    and no cumsum over 4096 pixels (both slow on XLA:CPU)."""
    nw = words.shape[1]
    k = first + jnp.arange(n, dtype=jnp.int32)
    wi = jnp.sum(incl[:, None, :] <= k[None, :, None], axis=2, dtype=jnp.int32)
    wic = jnp.minimum(wi, nw - 1)
    r = k[None] - jnp.take_along_axis(incl - cnt, wic, axis=1)
    word = jnp.take_along_axis(words, wic, axis=1)
    pos = jnp.zeros_like(r)
    for w in (16, 8, 4, 2, 1):
      low = jax.lax.population_count(
          (word >> pos.astype(jnp.uint32)) & jnp.uint32((1 << w) - 1)).astype(jnp.int32)
      go = r >= low
      r, pos = jnp.where(go, r - low, r), jnp.where(go, pos + w, pos)
    return jnp.where(wi < nw, wic * 32 + pos, D)

  def over_nonzeros(v, init, update, first_chunk=64, chunk=16):
    """Folds update(acc, positions (B,), values (B, 1)) over every nonzero of each row of v:
    `first_chunk` slots, then a while loop of `chunk` slots until every row is done."""
    ve = jnp.concatenate([v, jnp.zeros((v.shape[0], 1), v.dtype)], axis=1)
    words, cnt, incl = nonzero_words(v)

    def run(acc, first, n):
      pos = nonzero_slots(words, cnt, incl, first, n)
      val = jnp.take_along_axis(ve, pos, axis=1)
      step = lambda a, pv: (update(a, pv[0], pv[1][:, None]), None)
      return jax.lax.scan(step, acc, (pos.T, val.T), unroll=8)[0]

    acc = run(init, 0, first_chunk)
    most = jnp.max(incl[:, -1])
    return jax.lax.while_loop(lambda c: c[0] < most,
                              lambda c: (c[0] + chunk, run(c[1], c[0], chunk)),
                              (jnp.int32(first_chunk), acc))[1]

  def edges_fwd(x, W):
    Se = with_zero_row(column_cumsum(W))
    return over_nonzeros(edges_of(x), jnp.zeros((x.shape[0], W.shape[1]), W.dtype),
                         lambda acc, p, v: acc + v * Se.at[p].get(mode="promise_in_bounds"))

  def edges_scatter_wgrad(x, W, dy):
    dS = over_nonzeros(edges_of(x), jnp.zeros((D + 1, W.shape[1]), dy.dtype),
                       lambda acc, p, v: acc.at[p].add(v * dy, mode="promise_in_bounds"))
    return column_cumsum(dS[:D], reverse=True)

  def split3(a):
    hi = a.astype(jnp.bfloat16)
    r = a - hi.astype(jnp.float32)
    mid = r.astype(jnp.bfloat16)
    return hi, mid, (r - mid.astype(jnp.float32)).astype(jnp.bfloat16)

  def bf16_dot(a, b, dims):
    return jax.lax.dot_general(a, b, (dims, ((), ())), preferred_element_type=jnp.float32)

  def bf16_split3_fwd(x, W):
    xb = x.astype(jnp.bfloat16)
    return sum(bf16_dot(xb, w, ((1,), (0,))) for w in split3(W))

  def bf16_split3_wgrad(x, W, dy):
    xb = x.astype(jnp.bfloat16)
    return sum(bf16_dot(xb, d, ((0,), (0,))) for d in split3(dy))

  def bf16(x, W, b):
    return bf16_dot(x.astype(jnp.bfloat16), W.astype(jnp.bfloat16), ((1,), (0,))) + b

  variants = {
      "dense": dense,
      "gather_scatter": gather_scatter,
      "gather_scatter_given": gather_scatter_given,
      "gather_segment_sum": custom_bwd(gather_fwd, segsum_wgrad),
      "gather_dense_bwd": custom_bwd(gather_fwd, dense_wgrad),
      "bcoo": bcoo,
      "edges_dense_bwd": custom_bwd(edges_fwd, dense_wgrad),
      "edges_scatter": custom_bwd(edges_fwd, edges_scatter_wgrad),
      "bf16_split3": custom_bwd(bf16_split3_fwd, bf16_split3_wgrad),
      "bf16": bf16,
  }
  return variants, lit_indices


def _skip_reason(name: str, B: int, H: int, K: int) -> str | None:
  if name in ("gather_segment_sum", "bcoo") and B * K * H * 4 > _GIB:
    return f"would materialise a ({B * K}, {H}) float32 array ({B * K * H * 4 / _GIB:.1f} GiB)"
  return None


def time_first_layer(images_NxD, K, batch_sizes, hiddens, repeats, seed=0) -> list[dict]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  variants, lit_indices = build_variants(K)
  rng = np.random.default_rng(seed)
  results = []
  for B in batch_sizes:
    rows = rng.choice(len(images_NxD), B, replace=False)
    x = jnp.asarray(np.unpackbits(images_NxD[np.sort(rows)], axis=1)[:, :D].astype(np.float32))
    idx = jax.jit(lit_indices)(x)
    for H in hiddens:
      # nnx.Linear's default init (LeCun normal): std 1/sqrt(fan_in)
      W = jnp.asarray(rng.normal(size=(D, H)).astype(np.float32) / np.sqrt(D))
      b = jnp.asarray(rng.normal(size=(H,)).astype(np.float32) * 0.01)
      g = jnp.asarray(rng.normal(size=(B, H)).astype(np.float32))
      compiled, skipped, errors = {}, {}, {}
      for name, layer in variants.items():
        if (why := _skip_reason(name, B, H, K)):
          skipped[name] = why
          continue
        first = idx if name == "gather_scatter_given" else x

        def loss(W, first, b, g, layer=layer):
          return jnp.vdot(layer(first, W, b), g)

        t0 = time.perf_counter()
        compiled[name] = (jax.jit(jax.value_and_grad(loss)).lower(W, first, b, g).compile(),
                          (W, first, b, g), time.perf_counter() - t0)
      ref_loss, ref_grad = compiled["dense"][0](*compiled["dense"][1])
      grad_scale = float(jnp.max(jnp.abs(ref_grad)))
      for name, (fn, args, _) in compiled.items():
        l, gr = fn(*args)
        errors[name] = {"loss": float(abs(l - ref_loss)),
                        "weight_grad": float(jnp.max(jnp.abs(gr - ref_grad)))}
      wall = {n: [] for n in compiled}
      cpu = {n: [] for n in compiled}
      for _ in range(repeats + 1):  # the first round is dropped
        for name, (fn, args, _) in compiled.items():
          c0, t0 = time.process_time(), time.perf_counter()
          jax.block_until_ready(fn(*args))
          wall[name].append(time.perf_counter() - t0)
          cpu[name].append(time.process_time() - c0)
      med = {n: statistics.median(v[1:]) for n, v in wall.items()}
      med_cpu = {n: statistics.median(v[1:]) for n, v in cpu.items()}
      entry = {"batch_size": B, "hidden": H, "lit_pixels_mean": float(x.sum(1).mean()),
               "lit_pixels_max": int(x.sum(1).max()), "max_abs_weight_grad": grad_scale,
               "variants": {}}
      for name in compiled:
        entry["variants"][name] = {
            "median_ms": round(med[name] * 1e3, 2),
            "median_cpu_ms": round(med_cpu[name] * 1e3, 2),
            "ratio_to_dense": round(med["dense"] / med[name], 3),
            "cpu_ratio_to_dense": round(med_cpu["dense"] / med_cpu[name], 3),
            "all_ms": [round(t * 1e3, 2) for t in wall[name][1:]],
            "max_abs_error": {k: float(f"{v:.3g}") for k, v in errors[name].items()},
            "compile_s": round(compiled[name][2], 2),
        }
      for name, why in skipped.items():
        entry["variants"][name] = {"skipped": why}
      results.append(entry)
      print(json.dumps({"progress": f"B={B} H={H}",
                        "ratio_to_dense": {n: v.get("ratio_to_dense")
                                           for n, v in entry["variants"].items()}}),
            file=__import__("sys").stderr, flush=True)
  return results


def time_training_epochs(ds, steps: int) -> list[dict]:
  """The real train epoch of the two dSprites MLP configs on the first `steps` batches."""
  from vae_jax import sweeps  # pylint: disable=g-import-not-at-top
  out = []
  for path, variant, member in (("configs/dsprites_vae.py", None, None),
                                ("configs/dsprites_chen.py", "cpu", "beta_vae")):
    module = sweeps.load_module(str(ROOT / path))
    c = module.get_config(variant) if variant else module.get_config()
    if member:
      c = sweeps.apply_overrides(c, module.get_sweep(variant)[member])
    name = path + (f":{variant}" if variant else "") + (f" --member={member}" if member else "")
    out.append({"config": name, "encoder": [D, *c.model.hidden_sizes],
                **common.time_train_epoch(c, ds, steps)})
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch_sizes", type=int, nargs="+", default=[128, 256, 2048])
  parser.add_argument("--hidden", type=int, nargs="+", default=[512, 1200])
  parser.add_argument("--repeats", type=int, default=7, help="timed rounds (after a dropped one)")
  parser.add_argument("--train_steps", type=int, default=100,
                      help="steps of the real train epoch to time per config (0: skip)")
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  from vae_jax import data as data_lib, sweeps  # pylint: disable=g-import-not-at-top
  start = datetime.datetime.now().astimezone()
  load_before = os.getloadavg()
  ds = data_lib.load(sweeps.load_module(str(ROOT / "configs/dsprites_vae.py")).get_config().data)
  packed = np.asarray(ds.train_images)
  lit = np.zeros(len(packed), np.int32)
  edges = np.zeros(len(packed), np.int32)
  for s in range(0, len(packed), 65536):  # chunks: the unpacked set would be 3 GB
    img = np.unpackbits(packed[s:s + 65536], axis=1)[:, :D].reshape(-1, ROWS, COLS)
    lit[s:s + 65536] = img.sum((1, 2))
    t = np.diff(np.concatenate([img, np.zeros_like(img[:, :1])], axis=1).astype(np.int8), axis=1)
    edges[s:s + 65536] = (t != 0).sum((1, 2))
  K = int(lit.max())
  cpu0 = common.cpu_seconds()
  layer = time_first_layer(packed, K, args.batch_sizes, args.hidden, args.repeats)
  cpu_layer = common.cpu_seconds() - cpu0
  epochs = time_training_epochs(ds, args.train_steps) if args.train_steps else []
  result = {
      "benchmark": "sparse_first_layer",
      "date": start.isoformat(timespec="seconds"),
      "dataset": {"images": len(packed), "lit_pixels_max": K,
                  "lit_pixels_mean": round(float(lit.mean()), 1),
                  "lit_fraction": round(float(lit.mean()) / D, 4),
                  "row_edges_max": int(edges.max()),
                  "row_edges_mean": round(float(edges.mean()), 1)},
      "padded_lit_count_K": K,
      "repeats": args.repeats,
      "first_layer": layer,
      "train_epochs": epochs,
      "cpu_model": common.cpu_model(),
      "cpu_count": os.cpu_count(),
      "devices": [str(d) for d in jax.devices()],
      "jax": jax.__version__,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
      "wall_seconds_total": round((datetime.datetime.now().astimezone() - start).total_seconds(), 1),
      "cpu_seconds_first_layer": round(cpu_layer, 1),
      "cpu_seconds_total": round(common.cpu_seconds(), 1),
  }
  print(json.dumps(result, allow_nan=False))


if __name__ == "__main__":
  main()
