"""Training: `train_and_evaluate(config, workdir)` for one run, and `train_group(configs,
workdirs)` for sweep members that share every array shape (one vmapped program).

Read top to bottom: # Setup, # Resume, # Compile, # Train loop, # Finish. The compiled
programs are `step.py`'s; what a finished run writes beyond its metrics is `finish.py`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import signal
import threading
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from vae_jax import checkpoints, data as data_lib, faults, finish, hosts, locks, models
from vae_jax import objectives, optim, step as step_lib, workdir as workdir_lib, writers
from vae_jax.data import batches
from vae_jax.errors import UserError


class DivergenceError(UserError):
  """Training produced NaN or Inf; the last good checkpoint is kept."""


class Interrupted(Exception):
  """SIGTERM or Ctrl-C arrived; a checkpoint of the last finished epoch was saved."""

  def __init__(self, signum: int, epoch: int, by_peer: bool = False):
    self.signum, self.epoch = signum, epoch
    name = signal.Signals(signum).name
    got = "a signal reached another process of this run" if by_peer else f"{name} received"
    super().__init__(f"{got}: saved a checkpoint at epoch {epoch}; relaunch the same "
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


def _matmul_precision(name: str):
  """`jax.default_matmul_precision(name)`, or nothing for "default" (the backend's own)."""
  return contextlib.nullcontext() if name == "default" else jax.default_matmul_precision(name)


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process."""
  return Mesh(np.array(jax.devices()), ("data",))


def to_global(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Host array (identical on every process) -> global array with the given sharding."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _stack(trees, sharding):
  """Per-member pytrees -> one pytree with a leading member axis, as global arrays."""
  return jax.tree.map(lambda *a: to_global(np.stack([np.asarray(x) for x in a]), sharding),
                      *trees)


def group_key(config) -> str:
  """Configs with equal keys can train as one vectorised group."""
  d = workdir_lib.flatten(json.loads(config.to_json_best_effort()))
  for f in objectives.vectorised_fields(config):
    d.pop(f, None)
  return json.dumps({k: v for k, v in d.items() if not k.startswith("wandb.")}, sort_keys=True)


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
  """Trains members that differ only in `objectives.vectorised_fields` as one vmapped program.

  Each member writes its own workdir (config.json, metrics.jsonl, checkpoints/, wandb/,
  results.json, PNGs) exactly as if it had been run alone. Keyword arguments: `group_name`,
  `allow_config_change`, `dataset` (skip loading), `extra_config` (entries such as a sweep
  member's overrides added to each member's W&B config). SIGTERM / Ctrl-C stop it cleanly
  after the current epoch (`Interrupted`).
  """
  if len({group_key(c) for c in configs}) != 1:
    raise ValueError("train_group members must differ only in "
                     + ", ".join(objectives.vectorised_fields(configs[0])))
  members = [_Member(c, pathlib.Path(w)) for c, w in zip(configs, workdirs)]
  with _StopRequests() as stop, _locked(members):
    try:
      return _train_group(members, stop=stop, **kwargs)
    except Exception as e:  # pylint: disable=broad-except  (a machine's fault: one line)
      if not faults.is_fault(e):
        raise
      _close_after_fault(members)  # first: a checkpoint still being written completes
      raise faults.translate(e, config=configs[0], num_members=len(members),
                             workdir=", ".join(str(m.workdir) for m in members[:3])
                             + (" ..." if len(members) > 3 else ""),
                             kept=_kept(members)) from None


@contextlib.contextmanager
def _locked(members):
  """Holds every member's workdir lock (process 0 takes them; the others learn whether it
  could), so that no second launch trains into the same workdir."""
  workdirs = [m.workdir for m in members]
  hosts.main_first(lambda: locks.acquire_all(workdirs), "lock the workdirs", others_too=False)
  try:
    yield
  finally:
    if jax.process_index() == 0:
      locks.release_all(workdirs)


def _kept(members) -> str | None:
  """The newest complete checkpoint, as the messages about a failed run name it."""
  epochs = [checkpoints.complete_epochs(m.workdir) for m in members]
  if not all(epochs):
    return None
  newest = min(max(e) for e in epochs)
  where = members[0].workdir / "checkpoints" if len(members) == 1 else "each member's checkpoints/"
  return f"epoch {newest} in {where}"


def _close_after_fault(members):
  """Closes what a failed run holds open, dropping a checkpoint a full disk cut short."""
  import io  # pylint: disable=g-import-not-at-top
  for m in members:
    for closer in (m.ckpt, m.writer):
      # Orbax's background writers report the same fault again, some straight to stderr.
      with contextlib.redirect_stderr(io.StringIO()):
        try:
          if closer is not None:
            closer.close()
        except Exception:  # pylint: disable=broad-except  (the same fault again)
          pass
    checkpoints.remove_partial(m.workdir)


def _train_group(members: Sequence[_Member], *, stop: _StopRequests,
                 group_name: str | None = None, allow_config_change: bool = False,
                 dataset: data_lib.Dataset | None = None,
                 extra_config: Sequence[dict] | None = None) -> list[dict]:
  """`train_group`'s body, honouring the stop requests of `stop`."""
  # Setup ------------------------------------------------------------------------------
  cfg0 = members[0].config
  is_main = jax.process_index() == 0
  # The config first: a finished run must not answer for a config it was not trained with.
  for m in members:
    workdir_lib.check_resumable(m.workdir, m.config, allow_config_change)
  if all(workdir_lib.is_finished(m.workdir, m.config) for m in members):
    return [finish.report_finished(m.workdir, m.config, is_main) for m in members]

  ds = dataset if dataset is not None else load_dataset(cfg0.data)
  mesh = make_mesh()
  num_train = len(ds.train_images)
  steps_per_epoch = num_train // cfg0.batch_size
  if steps_per_epoch < 1:
    raise UserError(f"config.batch_size={cfg0.batch_size} is invalid: expected at most the "
                    f"number of training images ({num_train})")
  M = len(members)
  replicated = NamedSharding(mesh, P())
  inits = [models.init_params(m.config, ds.image_shape) for m in members]
  # Two views of the same float32 parameters: the step computes in config.dtype, evaluation
  # in float32 (honest likelihoods, comparable between runs of either dtype).
  graphdef, _, rest = inits[0]
  train_graphdef = models.compute_graphdef(cfg0, ds.image_shape)
  params = _stack([i[1] for i in inits], replicated)
  tx = optim.transform(cfg0)
  opt_state = jax.jit(jax.vmap(tx.init), out_shardings=replicated)(params)
  for m in members:
    m.ckpt = checkpoints.Checkpointer(m.workdir, m.config.keep_checkpoints)

  # Resume -----------------------------------------------------------------------------
  saved, restored = _restore_newest(members, jax.tree.map(lambda a: a[0], params),
                                    jax.tree.map(lambda a: a[0], opt_state), is_main)
  start_epoch = min(saved, cfg0.num_epochs)
  if restored:
    params = _stack([r[0] for r in restored], replicated)
    opt_state = _stack([r[1] for r in restored], replicated)
  train_seconds = _open_logs(members, start_epoch * steps_per_epoch, group_name, extra_config,
                             is_main)

  # Data on device: the whole training split replicated, the test split sharded.
  train_images = to_global(ds.train_images, replicated)
  test_np, mask_np, eval_batch = batches.pad_test_split(ds.test_images, mesh.devices.size,
                                                        cfg0.eval_batch_size)
  test_images = to_global(test_np, NamedSharding(mesh, P("data")))
  test_mask = to_global(mask_np, NamedSharding(mesh, P("data")))
  hparams = {f: to_global(np.array([float(m.config[f]) for m in members], np.float32), replicated)
             for f in objectives.member_hparams(cfg0)}
  seeds = to_global(np.array([m.config.seed for m in members], np.uint32), replicated)
  betas = hparams["beta"]

  # Compile ----------------------------------------------------------------------------
  epoch_fn = step_lib.build_train_epoch(graphdef=train_graphdef, rest=rest, tx=tx, mesh=mesh,
                                        config=cfg0, image_shape=ds.image_shape,
                                        num_train=num_train, num_members=M,
                                        packed=ds.packed_shape is not None)
  test_metrics = step_lib.build_test_metrics(graphdef=graphdef, rest=rest, mesh=mesh,
                                             config=cfg0, image_shape=ds.image_shape,
                                             num_members=M, num_padded=len(test_np),
                                             eval_batch=eval_batch)
  decompose = None
  if (cfg0.kl_decomposition_points > 0 and cfg0.model.name == "vae"
      and cfg0.model.stochastic_layers == 1):
    decompose = step_lib.build_kl_decomposition(
        graphdef=graphdef, rest=rest, config=cfg0, image_shape=ds.image_shape, num_members=M,
        num_test=len(ds.test_images), num_points=cfg0.kl_decomposition_points,
        eval_batch=eval_batch)
  t0 = time.perf_counter()
  with _matmul_precision(cfg0.train_matmul_precision):  # fixed when the program is traced
    compiled = epoch_fn.lower(params, opt_state, train_images, hparams, seeds,
                              jnp.int32(start_epoch)).compile()
  compile_seconds = time.perf_counter() - t0

  def evaluate(p):
    out = test_metrics(p, test_images, test_mask, betas, seeds)
    if decompose is not None:
      out = {**out, **decompose(p, test_images, test_mask, seeds)}
    return jax.device_get(out)

  run_epoch = lambda p, o, e: compiled(p, o, train_images, hparams, seeds, jnp.int32(e))

  # Train loop -------------------------------------------------------------------------
  params, opt_state, loop = _train_loop(members, run_epoch, evaluate, params, opt_state,
                                        start_epoch, train_seconds, steps_per_epoch, stop,
                                        group_name, is_main)

  # Finish -----------------------------------------------------------------------------
  last_test = loop["last_test"] if loop["last_test"] is not None else evaluate(params)
  times = loop["epoch_times"]
  # Steady state: every epoch of this launch ran the precompiled program.
  timing = {"train/examples_per_s": (steps_per_epoch * cfg0.batch_size * len(times) / sum(times)
                                     if times else float("nan")),
            "train/seconds": loop["train_seconds"], "train/compile_seconds": compile_seconds,
            "epochs": cfg0.num_epochs, "steps": cfg0.num_epochs * steps_per_epoch,
            "members_trained_together": M, **memory_stats(compiled)}
  results = []
  for i, m in enumerate(members):
    member_params = jax.tree.map(lambda a, i=i: np.asarray(a[i]), params) if is_main else None
    results.append(finish.finish_member(
        m.config, m.workdir, m.writer, failed=m.failed, model=(graphdef, member_params, rest),
        test={k: float(v[i]) for k, v in last_test.items()}, train=loop["last_train"][i],
        timing=timing, dataset=ds, is_main=is_main))
  _close(members)
  return results


def load_dataset(data_config) -> data_lib.Dataset:
  """`data.load`, preparing the dataset once: process 0 first, then the others from its cache."""
  return hosts.main_first(lambda: data_lib.load(data_config), "prepare the dataset")


def _restore_newest(members, params_like, opt_state_like, is_main: bool):
  """Restores the newest epoch that every member has saved and that restores for all of them.
  A checkpoint that does not restore is reported in one line and moved to DIR/damaged/;
  members' checkpoints newer than the epoch resumed are dropped (they are recomputed).
  Returns (epoch, [(params, opt_state)] per member), (0, []) for a fresh start."""
  damaged = []
  while True:
    common = set.intersection(*[set(m.ckpt.all_epochs()) for m in members])
    if not common:
      break
    epoch, restored, bad = max(common), [], None
    for m in members:
      try:
        restored.append(m.ckpt.restore(epoch, params_like, opt_state_like))
      except checkpoints.Damaged as e:
        bad = (m, e)
        break
    if bad is None:
      for m in members:
        m.ckpt.delete_after(epoch)
      return epoch, restored
    m, e = bad
    where = hosts.main_first(lambda m=m, e=epoch: str(m.ckpt.quarantine(e)),
                             "move a damaged checkpoint aside", others_too=False, share=True)
    m.ckpt.reload()
    if is_main:
      tqdm.write(f"warning: {e}; moved it to {where}; trying an older one")
    damaged.append(f"epoch {epoch} of {m.workdir} (moved to {where})")
  if damaged:
    raise checkpoints.Damaged(
        f"no checkpoint of {members[0].workdir if len(members) == 1 else 'the group'} restores "
        f"(damaged: {'; '.join(damaged)}); relaunch to train from scratch, or put back "
        "checkpoints from a backup")
  return 0, []


def _open_logs(members, resume_step: int, group_name, extra_config, is_main: bool) -> float:
  """Opens each member's writer (metrics.jsonl cut back to the resumed step, config.json
  rewritten, W&B resumed); returns the training seconds the members had already spent."""
  prev_seconds = []
  for i, m in enumerate(members):
    if is_main:
      writers.truncate_metrics(m.workdir / "metrics.jsonl", resume_step)
      prev_seconds.append(workdir_lib.last_logged(m.workdir, "train/seconds"))
      workdir_lib.write_json(m.workdir / "config.json", workdir_lib.run_info(m.config))
    wandb_config = {**workdir_lib.resolved_config(m.config),
                    **(extra_config[i] if extra_config else {})}
    m.writer = writers.Writer(m.workdir, config=wandb_config, wandb_config=m.config.wandb,
                              group=group_name, enabled=is_main)
  return max(prev_seconds) if prev_seconds else 0.0


def _train_loop(members, run_epoch, evaluate, params, opt_state, start_epoch: int,
                train_seconds: float, steps_per_epoch: int, stop, group_name, is_main):
  """Runs the epochs from `start_epoch`: log, evaluate, checkpoint, stop on request or when
  every member diverged. Returns (params, opt_state, loop record)."""
  cfg0, M = members[0].config, len(members)
  num_epochs = cfg0.num_epochs
  # The bar is closed on any exit, so that an error's line starts a line of its own.
  with tqdm(total=num_epochs, initial=start_epoch, disable=not is_main, unit="epoch",
            desc=members[0].workdir.name if M == 1 else f"{group_name or 'group'} x{M}",
            mininterval=1.0, dynamic_ncols=True) as bar:
    epoch_times, last_train, last_test = [], [{} for _ in members], None
    for epoch in range(start_epoch, num_epochs):
      if stop.signum is not None and jax.process_count() == 1:  # arrived while compiling
        _stop(bar, members, Interrupted(stop.signum, epoch))
      t0 = time.perf_counter()
      params, opt_state, metrics = run_epoch(params, opt_state, epoch)
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
            workdir_lib.write_json(m.workdir / "failed.json", {"error": m.failed, "step": bad})
            tqdm.write(f"{m.workdir}: {m.failed}")
      if all(m.failed for m in members):
        _stop(bar, members, DivergenceError(members[0].failed))

      test = None
      if (epoch + 1) % cfg0.eval_every_epochs == 0 or last_epoch:
        test = last_test = evaluate(params)
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
      # Every process stops at the same epoch when a signal reached any of them.
      if hosts.any_process(stop.signum is not None) and not last_epoch:
        if (epoch + 1) % cfg0.checkpoint_every_epochs:
          _save(members, epoch + 1, params, opt_state)
        _stop(bar, members, Interrupted(stop.signum or signal.SIGTERM, epoch + 1,
                                        by_peer=stop.signum is None))
    bar.close()
    return params, opt_state, {"epoch_times": epoch_times, "last_train": last_train,
                               "last_test": last_test, "train_seconds": train_seconds}


def _stop(bar, members, error: Exception):
  bar.close()
  _close(members)
  raise error


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


def _divergence_message(m, bad_step, steps_per_epoch) -> str:
  last = m.ckpt.latest_epoch()
  kept = f"epoch {last} in {m.workdir / 'checkpoints'}" if last else "none (diverged before the first save)"
  return (f"training diverged: loss or gradient became NaN/Inf at step {bad_step} (epoch "
          f"{bad_step // steps_per_epoch + 1}); last good checkpoint: {kept}; look at "
          f"learning_rate={m.config.learning_rate}, optimizer.grad_clip_norm="
          f"{m.config.optimizer.grad_clip_norm}, kl_warmup_steps={m.config.kl_warmup_steps}, "
          f"model.likelihood={m.config.model.likelihood!r}")
