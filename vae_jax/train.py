"""Training and evaluation: `train_and_evaluate(config, workdir)` for one run, and
`train_group(configs, workdirs)` for sweep members that share every array shape.

Read top to bottom: # Setup, # Resume, # Compile, # Train loop, # Finish.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import signal
import threading
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from vae_jax import checkpoints, data as data_lib, inference, models, optim, plots, runinfo, step as step_lib, writers
from vae_jax.errors import UserError

# Fields in which the members of one vectorised group may differ (they change no shapes).
VECTORISED_FIELDS = ("seed", "beta", "learning_rate", "kl_warmup_steps", "free_bits")
HPARAM_FIELDS = ("beta", "learning_rate", "kl_warmup_steps", "free_bits")


class DivergenceError(UserError):
  """Training produced NaN or Inf; the last good checkpoint is kept."""


class Interrupted(Exception):
  """SIGTERM or Ctrl-C arrived; a checkpoint of the last finished epoch was saved."""

  def __init__(self, signum: int, epoch: int):
    self.signum, self.epoch = signum, epoch
    name = signal.Signals(signum).name
    super().__init__(f"{name} received: saved a checkpoint at epoch {epoch}; relaunch the same "
                     "command to resume")


class _StopRequests:
  """Turns the first SIGTERM / SIGINT into a request the loop honours after the current epoch
  (checkpoint, then exit); a second SIGINT interrupts at once."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    tqdm.write(f"{signal.Signals(signum).name}: stopping after this epoch (checkpointing); "
               "Ctrl-C again to stop at once")

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


@dataclasses.dataclass
class _Member:
  config: Any
  workdir: pathlib.Path
  writer: writers.Writer | None = None
  ckpt: checkpoints.Checkpointer | None = None
  failed: str | None = None


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process."""
  return Mesh(np.array(jax.devices()), ("data",))


def to_global(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Host array (identical on every process) -> global array with the given sharding."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def group_key(config) -> str:
  """Configs with equal keys can train as one vectorised group."""
  d = runinfo.flatten(json.loads(config.to_json_best_effort()))
  for f in VECTORISED_FIELDS:
    d.pop(f, None)
  return json.dumps({k: v for k, v in d.items() if not k.startswith("wandb.")}, sort_keys=True)


def read_results(workdir) -> dict | None:
  path = pathlib.Path(workdir) / "results.json"
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except ValueError:
    return None


def init_member(config, image_shape):
  """Builds the model of one member from its init key; returns (graphdef, params, rest).

  The graphdef computes in float32: it is the one evaluation, figures and every tool that
  reads a finished run use, whatever `config.dtype` the run trained in (see
  `compute_graphdef`).
  """
  init_key = jax.random.split(jax.random.key(config.seed), 4)[step_lib.KEY_INIT]
  model = models.from_config(config.model, image_shape, nnx.Rngs(params=init_key))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, params.to_pure_dict(), rest


def compute_graphdef(config, image_shape):
  """The graphdef of the training step: the same modules and float32 parameters as
  `init_member`'s, computing in `config.dtype`. Built abstractly (no initialisation runs)."""
  abstract = nnx.eval_shape(lambda: models.from_config(config.model, image_shape,
                                                       nnx.Rngs(params=0), dtype=config.dtype))
  return nnx.split(abstract, nnx.Param, ...)[0]


def memory_stats(compiled) -> dict:
  """Memory of training, for benchmarks: the device's peak where the backend counts it (GPU,
  TPU), the compiled epoch program's own accounting (arguments + outputs + temporaries), and
  the process's peak resident memory (on CPU, the device's memory is host memory)."""
  import resource  # pylint: disable=g-import-not-at-top
  out = {"memory/max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
  try:
    analysis = compiled.memory_analysis()
    out["memory/epoch_program_bytes"] = int(analysis.argument_size_in_bytes
                                            + analysis.output_size_in_bytes
                                            + analysis.temp_size_in_bytes
                                            - analysis.alias_size_in_bytes)
  except (AttributeError, NotImplementedError, jax.errors.JaxRuntimeError):
    pass
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["memory/device_peak_bytes"] = int(stats["peak_bytes_in_use"])
  return out


def train_and_evaluate(config, workdir, *, allow_config_change: bool = False) -> dict:
  """Trains one run into `workdir` (resuming from its checkpoints); returns its results."""
  return train_group([config], [workdir], allow_config_change=allow_config_change)[0]


def train_group(configs: Sequence[Any], workdirs: Sequence[str | pathlib.Path], **kwargs) -> list[dict]:
  """Trains members that differ only in VECTORISED_FIELDS as one vmapped program.

  Each member writes its own workdir (config.json, metrics.jsonl, checkpoints/, wandb/,
  results.json, PNGs) exactly as if it had been run alone. Keyword arguments: `group_name`,
  `allow_config_change`, `dataset` (skip loading), `extra_config` (entries such as a sweep
  member's overrides added to each member's W&B config). SIGTERM / Ctrl-C stop it cleanly
  after the current epoch (`Interrupted`).
  """
  with _StopRequests() as stop:
    return _train_group(configs, workdirs, stop=stop, **kwargs)


def _train_group(configs: Sequence[Any], workdirs: Sequence[str | pathlib.Path], *,
                 stop: _StopRequests, group_name: str | None = None,
                 allow_config_change: bool = False, dataset: data_lib.Dataset | None = None,
                 extra_config: Sequence[dict] | None = None) -> list[dict]:
  """`train_group`'s body, honouring the stop requests of `stop`."""
  # Setup ------------------------------------------------------------------------------
  keys = {group_key(c) for c in configs}
  if len(keys) != 1:
    raise ValueError("train_group members must differ only in " + ", ".join(VECTORISED_FIELDS))
  cfg0 = configs[0]
  is_main = jax.process_index() == 0
  members = [_Member(c, pathlib.Path(w)) for c, w in zip(configs, workdirs)]

  done = [read_results(m.workdir) for m in members]
  if all(r is not None and r.get("epochs") == m.config.num_epochs for r, m in zip(done, members)):
    for r, m in zip(done, members):
      if is_main:
        print(f"{m.workdir}: finished ({m.config.num_epochs} epochs); " + _summary(r))
    return done

  for m in members:  # refuse to resume a workdir under a different config
    old = m.workdir / "config.json"
    if old.exists() and not allow_config_change:
      diffs = runinfo.config_differences(json.loads(old.read_text())["config"],
                                         runinfo.resolved_config(m.config))
      if diffs:
        raise UserError(f"{m.workdir} holds a run with a different config (fields: "
                        f"{', '.join(diffs)}); use a new --workdir or pass --allow_config_change")

  ds = dataset if dataset is not None else data_lib.load(cfg0.data)
  mesh = make_mesh()
  n_dev = mesh.devices.size
  num_train = len(ds.train_images)
  steps_per_epoch = num_train // cfg0.batch_size
  if steps_per_epoch < 1:
    raise UserError(f"config.batch_size={cfg0.batch_size} is invalid: expected at most the "
                    f"number of training images ({num_train})")
  M = len(members)
  replicated = NamedSharding(mesh, P())

  inits = [init_member(m.config, ds.image_shape) for m in members]
  # Two views of the same float32 parameters: the step computes in config.dtype, evaluation
  # in float32 (honest likelihoods, comparable between runs of either dtype).
  graphdef, _, rest = inits[0]
  train_graphdef = compute_graphdef(cfg0, ds.image_shape)
  params = jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *[i[1] for i in inits])
  params = jax.tree.map(lambda a: to_global(a, replicated), params)
  tx = optim.direction(cfg0.optimizer)
  opt_state = jax.jit(jax.vmap(tx.init), out_shardings=replicated)(params)

  for m in members:
    m.workdir.mkdir(parents=True, exist_ok=True)
    m.ckpt = checkpoints.Checkpointer(m.workdir, m.config.keep_checkpoints)

  # Resume -----------------------------------------------------------------------------
  # A group resumes from the newest epoch that every member has saved.
  common = set.intersection(*[set(m.ckpt.all_epochs()) for m in members])
  start_epoch = max(common) if common else 0
  start_epoch = min(start_epoch, cfg0.num_epochs)
  if start_epoch > 0:
    restored = [m.ckpt.restore(start_epoch, jax.tree.map(lambda a: a[0], params),
                               jax.tree.map(lambda a: a[0], opt_state)) for m in members]
    params = jax.tree.map(lambda *a: to_global(np.stack([np.asarray(x) for x in a]), replicated),
                          *[r[0] for r in restored])
    opt_state = jax.tree.map(lambda *a: to_global(np.stack([np.asarray(x) for x in a]), replicated),
                             *[r[1] for r in restored])

  prev_seconds = []
  for i, m in enumerate(members):
    if is_main:
      writers.truncate_metrics(m.workdir / "metrics.jsonl", start_epoch * steps_per_epoch)
      prev_seconds.append(_last_value(m.workdir / "metrics.jsonl", "train/seconds"))
      runinfo.write_json(m.workdir / "config.json", runinfo.run_info(m.config))
    wandb_config = {**runinfo.resolved_config(m.config), **(extra_config[i] if extra_config else {})}
    m.writer = writers.Writer(m.workdir, config=wandb_config,
                              wandb_config=m.config.wandb, group=group_name, enabled=is_main)
  train_seconds = max(prev_seconds) if prev_seconds else 0.0

  # Data on device: the whole training split replicated, the test split sharded.
  train_images = to_global(ds.train_images, replicated)
  eval_batch = min(cfg0.eval_batch_size, -(-len(ds.test_images) // n_dev))
  num_padded = -(-len(ds.test_images) // (n_dev * eval_batch)) * n_dev * eval_batch
  pad = num_padded - len(ds.test_images)
  test_np = np.concatenate([ds.test_images, np.zeros((pad, *ds.image_shape), np.uint8)])
  test_images = to_global(test_np, NamedSharding(mesh, P("data")))
  test_mask = to_global(np.r_[np.ones(len(ds.test_images)), np.zeros(pad)].astype(np.float32),
                        NamedSharding(mesh, P("data")))
  hparams = {f: to_global(np.array([float(m.config[f]) for m in members], np.float32), replicated)
             for f in HPARAM_FIELDS}
  seeds = to_global(np.array([m.config.seed for m in members], np.uint32), replicated)
  betas = hparams["beta"]

  # Compile ----------------------------------------------------------------------------
  epoch_fn = step_lib.build_train_epoch(graphdef=train_graphdef, rest=rest, tx=tx, mesh=mesh,
                                        config=cfg0, image_shape=ds.image_shape,
                                        num_train=num_train, num_members=M)
  evaluate = step_lib.build_evaluate(graphdef=graphdef, rest=rest, mesh=mesh, config=cfg0,
                                     image_shape=ds.image_shape, num_members=M,
                                     num_padded=num_padded, eval_batch=eval_batch)
  t0 = time.perf_counter()
  compiled = epoch_fn.lower(params, opt_state, train_images, hparams, seeds,
                            jnp.int32(start_epoch)).compile()
  compile_seconds = time.perf_counter() - t0

  # Train loop -------------------------------------------------------------------------
  num_epochs = cfg0.num_epochs
  bar = tqdm(total=num_epochs, initial=start_epoch, disable=not is_main, unit="epoch",
             desc=members[0].workdir.name if M == 1 else f"{group_name or 'group'} x{M}",
             mininterval=1.0, dynamic_ncols=True)
  epoch_times, last_train, last_test = [], [{} for _ in members], None
  for epoch in range(start_epoch, num_epochs):
    if stop.signum is not None:  # arrived before the first epoch of this launch finished
      bar.close()
      _close(members)
      raise Interrupted(stop.signum, epoch)
    t0 = time.perf_counter()
    params, opt_state, metrics = compiled(params, opt_state, train_images, hparams, seeds,
                                          jnp.int32(epoch))
    metrics = jax.device_get(metrics)
    dt = time.perf_counter() - t0
    epoch_times.append(dt)
    train_seconds += dt
    step = (epoch + 1) * steps_per_epoch
    last_epoch = epoch + 1 == num_epochs

    for i, m in enumerate(members):
      bad = int(metrics["nonfinite_step"][i])
      if bad >= 0 and m.failed is None:
        m.failed = _divergence_message(m, bad, steps_per_epoch)
        if is_main:
          runinfo.write_json(m.workdir / "failed.json", {"error": m.failed, "step": bad})
          tqdm.write(f"{m.workdir}: {m.failed}")
    if all(m.failed for m in members):
      bar.close()
      _close(members)
      raise DivergenceError(members[0].failed)

    test = None
    if (epoch + 1) % cfg0.eval_every_epochs == 0 or last_epoch:
      test = jax.device_get(evaluate(params, test_images, test_mask, betas, seeds))
      last_test = test
    for i, m in enumerate(members):
      if m.failed:
        continue
      scalars = {f"train/{k}": float(v[i]) for k, v in metrics.items() if k != "nonfinite_step"}
      scalars["train/epoch"] = epoch + 1
      scalars["train/seconds"] = train_seconds
      scalars["train/examples_per_s"] = steps_per_epoch * cfg0.batch_size / dt
      if test is not None:
        scalars.update({f"test/{k}": float(v[i]) for k, v in test.items()})
      m.writer.log(step, scalars)
      last_train[i] = scalars

    if (epoch + 1) % cfg0.checkpoint_every_epochs == 0 or last_epoch:
      _save(members, epoch + 1, params, opt_state)
    postfix = {"loss": f"{metrics['loss'][0]:.2f}",
               "test_elbo": f"{last_test['neg_elbo'][0]:.2f}" if last_test is not None else "-"}
    if last_test is not None and "neg_iwae" in last_test:
      postfix["test_iwae"] = f"{last_test['neg_iwae'][0]:.2f}"
    bar.set_postfix(postfix)
    bar.update(1)
    if stop.signum is not None and not last_epoch:
      if (epoch + 1) % cfg0.checkpoint_every_epochs:
        _save(members, epoch + 1, params, opt_state)
      bar.close()
      _close(members)
      raise Interrupted(stop.signum, epoch + 1)
  bar.close()

  # Finish -----------------------------------------------------------------------------
  if last_test is None:  # no epoch ran in this launch (num_epochs == start): evaluate once
    last_test = jax.device_get(evaluate(params, test_images, test_mask, betas, seeds))
  # Steady state: every epoch of this launch ran the precompiled program.
  ex_per_s = (steps_per_epoch * cfg0.batch_size * len(epoch_times) / sum(epoch_times)
              if epoch_times else float("nan"))
  memory = memory_stats(compiled)
  results = []
  for i, m in enumerate(members):
    if m.failed:
      res = {"failed": m.failed, "epochs": num_epochs, "members_trained_together": M}
      if is_main:
        runinfo.write_json(m.workdir / "results.json", res)
      results.append(res)
      continue
    res = {f"test/{k}": float(v[i]) for k, v in last_test.items()}
    res.update({k: v for k, v in last_train[i].items() if k.startswith("train/") and k not in (
        "train/epoch", "train/seconds", "train/examples_per_s", "train/grad_norm")})
    res.update({"train/examples_per_s": ex_per_s, "train/seconds": train_seconds,
                "train/compile_seconds": compile_seconds, "epochs": num_epochs,
                "steps": num_epochs * steps_per_epoch, "members_trained_together": M})
    res.update(memory)
    if is_main:
      member_params = jax.tree.map(lambda a, i=i: np.asarray(a[i]), params)
      images = _figures(m, graphdef, member_params, rest, ds)
      m.writer.log_images(num_epochs * steps_per_epoch, images)
      res.update(_test_nll(m, nnx.merge(graphdef, member_params, rest), ds))
      m.writer.summary({k: v for k, v in res.items() if isinstance(v, (int, float))})
      runinfo.write_json(m.workdir / "results.json", res)
      print(f"{m.workdir}: " + _summary(res))
    results.append(res)
  _close(members)
  return results


def _save(members, epoch, params, opt_state):
  for i, m in enumerate(members):
    if m.failed:
      continue  # keep its last good checkpoint
    take = lambda a, i=i: a[i]
    m.ckpt.save(epoch, jax.tree.map(take, params), jax.tree.map(take, opt_state))


def _close(members):
  for m in members:
    if m.ckpt is not None:
      m.ckpt.close()
    if m.writer is not None:
      m.writer.close()


def _figures(m, graphdef, params, rest, ds) -> dict[str, str]:
  """Reconstructions, samples and latents (and the manifold, in 2-D) of the finished model, as
  PNGs in its workdir."""
  model = nnx.merge(graphdef, params, rest)
  n = m.config.num_plot_images
  x = ds.test_images[:n]
  paths = {
      "reconstructions": plots.save_reconstructions(
          m.workdir / "reconstructions.png", x / 255.0, inference.reconstruct(model, x)),
  }
  key = jax.random.fold_in(jax.random.key(m.config.seed), 7)
  samples = inference.prior_samples(model, key, 64, ds.train_images[:10000])
  kind = "prior N(0, I)" if m.config.model.name == "vae" else "Gaussian fitted to training latents"
  paths["samples"] = plots.save_grid(m.workdir / "samples.png", samples, 8,
                                     f"Samples: decoded z ~ {kind}")
  from vae_jax import figures  # pylint: disable=g-import-not-at-top
  paths.update(figures.save_latent_figures(m.workdir, model, ds.test_images, ds.test_labels))
  return paths


def _test_nll(m, model, ds) -> dict:
  """test/nll (IWAE, k = config.eval_nll_k) and latent statistics; {} when off or an AE."""
  k = m.config.eval_nll_k
  if k <= 0 or m.failed:
    return {}
  if m.config.model.name != "vae":
    print(f"{m.workdir}: eval_nll_k={k} skipped: an AE defines no likelihood p(x)")
    return {}
  from vae_jax import likelihood  # pylint: disable=g-import-not-at-top
  out = likelihood.test_metrics(model, ds.test_images, k, likelihood.nll_key(m.config.seed))
  print(f"{m.workdir}: test/nll={out['test/nll']:.2f} (IWAE, k={k}), test/bpd={out['test/bpd']:.4f}, "
        f"active units {out['test/active_units']}/{m.config.model.latent_dim}")
  return out


def _divergence_message(m, bad_step, steps_per_epoch) -> str:
  last = m.ckpt.latest_epoch()
  kept = f"epoch {last} in {m.workdir / 'checkpoints'}" if last else "none (diverged before the first save)"
  return (f"training diverged: loss or gradient became NaN/Inf at step {bad_step} (epoch "
          f"{bad_step // steps_per_epoch + 1}); last good checkpoint: {kept}; look at "
          f"learning_rate={m.config.learning_rate}, optimizer.grad_clip_norm="
          f"{m.config.optimizer.grad_clip_norm}, kl_warmup_steps={m.config.kl_warmup_steps}, "
          f"model.likelihood={m.config.model.likelihood!r}")


def _last_value(path: pathlib.Path, key: str) -> float:
  if not path.exists():
    return 0.0
  value = 0.0
  for line in path.read_text().splitlines():
    try:
      value = float(json.loads(line).get(key, value))
    except ValueError:
      pass
  return value


def _summary(r: dict) -> str:
  keys = ("test/neg_elbo", "test/rec", "test/kl", "test/loss", "test/neg_iwae", "train/examples_per_s")
  return ", ".join(f"{k}={r[k]:.2f}" for k in keys if isinstance(r.get(k), (int, float)))
