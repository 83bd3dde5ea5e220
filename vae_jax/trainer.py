"""Training: `train_and_evaluate(config, workdir)` for one run, and `train_group(configs,
workdirs)` for sweep members that share every array shape (one vmapped program).

Read top to bottom: # Setup (data, parameters, the newest checkpoint that restores, logs),
# Compile, # Loop (epochs: log, evaluate, checkpoint, stop on request or divergence),
# Finish. The compiled programs are `step.py`'s; what a finished run writes beyond its
metrics is `finish.py`'s. Everything around the loop is the runtime's (`vae_jax/runtime/`):
stop requests, workdir locks, agreement between processes, logs, and the one line a fault
ends in (`runtime.faults.report`, which the launcher calls; training only attaches the run
to an exception, `faults.during_run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import signal
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from vae_jax import checkpoints, data as data_lib, finish, models, objectives, optim
from vae_jax import step as step_lib, workdir as workdir_lib
from vae_jax.data import batches
from vae_jax.errors import DivergenceError, UserError
from vae_jax.runtime import faults, files, hosts, locks, signals, writers


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


def _stack(trees, sharding):
  """Per-member pytrees -> one pytree with a leading member axis, as global arrays."""
  return jax.tree.map(lambda *a: to_global(np.stack([np.asarray(x) for x in a]), sharding),
                      *trees)


def _matmul_precision(name: str):
  """`jax.default_matmul_precision(name)`, or nothing for "default" (the backend's own)."""
  return contextlib.nullcontext() if name == "default" else jax.default_matmul_precision(name)


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


def load_dataset(data_config) -> data_lib.Dataset:
  """`data.load`, preparing the dataset once: process 0 first, then the others from its cache."""
  return hosts.main_first(lambda: data_lib.load(data_config), "prepare the dataset")


def train_and_evaluate(config, workdir, *, allow_config_change: bool = False) -> dict:
  """Trains one run into `workdir` (resuming from its checkpoints); returns its results."""
  return train_group([config], [workdir], allow_config_change=allow_config_change)[0]


def train_group(configs: Sequence[Any], workdirs: Sequence[str | pathlib.Path], **kwargs) -> list[dict]:
  """Trains members that differ only in `objectives.vectorised_fields` as one vmapped program.

  Each member writes its own workdir (config.json, metrics.jsonl, checkpoints/, wandb/,
  results.json, PNGs) exactly as if it had been run alone. Keyword arguments: `group_name`,
  `allow_config_change`, `dataset` (skip loading), `extra_config` (entries such as a sweep
  member's overrides added to each member's W&B config). SIGTERM / Ctrl-C stop it cleanly
  after the current epoch (`signals.Interrupted`); NaN/Inf in every member ends it with
  `DivergenceError`.
  """
  if len({group_key(c) for c in configs}) != 1:
    raise ValueError("train_group members must differ only in "
                     + ", ".join(objectives.vectorised_fields(configs[0])))
  members = [_Member(c, pathlib.Path(w)) for c, w in zip(configs, workdirs)]
  with (signals.StopRequests() as stop, locks.held_by_process_0([m.workdir for m in members]),
        faults.during_run(configs[0], [m.workdir for m in members])):
    try:
      results = _train_group(members, stop=stop, **kwargs)
    except BaseException:
      _close(members, after_error=True)
      raise
    _close(members)
    return results


def _train_group(members: Sequence[_Member], *, stop: signals.StopRequests,
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
  steps_per_epoch = len(ds.train_images) // cfg0.batch_size
  if steps_per_epoch < 1:
    raise UserError(f"config.batch_size={cfg0.batch_size} is invalid: expected at most the "
                    f"number of training images ({len(ds.train_images)})")
  mesh = make_mesh()
  model, params, opt_state, start_epoch = _initial_state(members, ds, mesh, is_main)
  seconds = []
  for i, m in enumerate(members):
    m.writer, spent = writers.open_run_logs(
        m.workdir, m.config, resume_step=start_epoch * steps_per_epoch, group=group_name,
        extra_config=extra_config[i] if extra_config else None, is_main=is_main)
    seconds.append(spent)

  # Compile ----------------------------------------------------------------------------
  programs = _compile(members, model, ds, mesh, params, opt_state, start_epoch)

  # Loop -------------------------------------------------------------------------------
  params, opt_state, loop = _train_loop(members, programs.run_epoch, programs.evaluate, params,
                                        opt_state, start_epoch, max(seconds), steps_per_epoch,
                                        stop, group_name, is_main)

  # Finish -----------------------------------------------------------------------------
  last_test = loop["last_test"] if loop["last_test"] is not None else programs.evaluate(params)
  times = loop["epoch_times"]
  # Steady state: every epoch of this launch ran the precompiled program.
  timing = {"train/examples_per_s": (steps_per_epoch * cfg0.batch_size * len(times) / sum(times)
                                     if times else float("nan")),
            "train/seconds": loop["train_seconds"],
            "train/compile_seconds": programs.compile_seconds,
            "epochs": cfg0.num_epochs, "steps": cfg0.num_epochs * steps_per_epoch,
            "members_trained_together": len(members), **memory_stats(programs.compiled)}
  results = []
  for i, m in enumerate(members):
    member_params = jax.tree.map(lambda a, i=i: np.asarray(a[i]), params) if is_main else None
    results.append(finish.finish_member(
        m.config, m.workdir, m.writer, failed=m.failed,
        model=(model.graphdef, member_params, model.rest),
        test={k: float(v[i]) for k, v in last_test.items()}, train=loop["last_train"][i],
        timing=timing, dataset=ds, is_main=is_main))
  return results


@dataclasses.dataclass
class _Model:
  """Two views of the same float32 parameters: the step computes in config.dtype
  (`train_graphdef`), evaluation in float32 (`graphdef`: honest likelihoods, comparable
  between runs of either dtype)."""
  graphdef: Any
  train_graphdef: Any
  rest: Any
  tx: Any


def _initial_state(members, ds, mesh, is_main: bool):
  """The model, and the members' parameters and optimiser state stacked on a leading member
  axis: freshly initialised, or restored from the newest epoch that every member has saved
  and that restores for all of them. Returns (model, params, opt_state, start epoch)."""
  cfg0 = members[0].config
  replicated = NamedSharding(mesh, P())
  # The objective's own modules (a FactorVAE's discriminator) join the model's parameters.
  auxiliary = objectives.OBJECTIVES[cfg0.objective].modules
  inits = [models.init_params(m.config, ds.image_shape, auxiliary) for m in members]
  model = _Model(graphdef=inits[0][0], rest=inits[0][2], tx=optim.transform(cfg0),
                 train_graphdef=models.compute_graphdef(cfg0, ds.image_shape, auxiliary))
  params = _stack([i[1] for i in inits], replicated)
  opt_state = jax.jit(jax.vmap(model.tx.init), out_shardings=replicated)(params)
  for m in members:
    m.ckpt = checkpoints.Checkpointer(m.workdir, m.config.keep_checkpoints)
  saved, restored = checkpoints.restore_newest(
      [m.ckpt for m in members], jax.tree.map(lambda a: a[0], params),
      jax.tree.map(lambda a: a[0], opt_state), is_main=is_main,
      name=str(members[0].workdir) if len(members) == 1 else "the group")
  if restored:
    params = _stack([r[0] for r in restored], replicated)
    opt_state = _stack([r[1] for r in restored], replicated)
  return model, params, opt_state, min(saved, cfg0.num_epochs)


@dataclasses.dataclass
class _Programs:
  run_epoch: Any  # (params, opt_state, epoch) -> (params, opt_state, metrics)
  evaluate: Any  # params -> test metrics on the host
  compiled: Any  # the compiled epoch program (its memory accounting)
  compile_seconds: float


def _compile(members, model: _Model, ds, mesh, params, opt_state, start_epoch: int) -> _Programs:
  """Puts the data on the devices (the whole training split replicated, the test split
  sharded) and compiles the epoch program once; evaluation compiles on its first call."""
  cfg0, M = members[0].config, len(members)
  replicated = NamedSharding(mesh, P())
  train_images = to_global(ds.train_images, replicated)
  test_np, mask_np, eval_batch = batches.pad_test_split(ds.test_images, mesh.devices.size,
                                                        cfg0.eval_batch_size)
  test_images = to_global(test_np, NamedSharding(mesh, P("data")))
  test_mask = to_global(mask_np, NamedSharding(mesh, P("data")))
  hparams = {f: to_global(np.array([float(m.config[f]) for m in members], np.float32), replicated)
             for f in objectives.member_hparams(cfg0)}
  seeds = to_global(np.array([m.config.seed for m in members], np.uint32), replicated)

  epoch_fn = step_lib.build_train_epoch(graphdef=model.train_graphdef, rest=model.rest,
                                        tx=model.tx, mesh=mesh, config=cfg0,
                                        image_shape=ds.image_shape,
                                        num_train=len(ds.train_images), num_members=M,
                                        packed=ds.packed_shape is not None)
  test_metrics = step_lib.build_test_metrics(graphdef=model.graphdef, rest=model.rest, mesh=mesh,
                                             config=cfg0, image_shape=ds.image_shape,
                                             num_members=M, num_padded=len(test_np),
                                             eval_batch=eval_batch)
  decompose = None
  if cfg0.kl_decomposition_points > 0 and step_lib.kl_decomposition_terms(cfg0):
    decompose = step_lib.build_kl_decomposition(
        graphdef=model.graphdef, rest=model.rest, config=cfg0, image_shape=ds.image_shape,
        num_members=M, num_test=len(ds.test_images), num_points=cfg0.kl_decomposition_points,
        eval_batch=eval_batch)
  t0 = time.perf_counter()
  with _matmul_precision(cfg0.train_matmul_precision):  # fixed when the program is traced
    compiled = epoch_fn.lower(params, opt_state, train_images, hparams, seeds,
                              jnp.int32(start_epoch)).compile()
  compile_seconds = time.perf_counter() - t0

  def evaluate(p):
    out = test_metrics(p, test_images, test_mask, hparams["beta"], seeds)
    if decompose is not None:
      out = {**out, **decompose(p, test_images, test_mask, seeds)}
    return jax.device_get(out)

  return _Programs(
      run_epoch=lambda p, o, e: compiled(p, o, train_images, hparams, seeds, jnp.int32(e)),
      evaluate=evaluate, compiled=compiled, compile_seconds=compile_seconds)


def _train_loop(members, run_epoch, evaluate, params, opt_state, start_epoch: int,
                train_seconds: float, steps_per_epoch: int, stop, group_name, is_main):
  """Runs the epochs from `start_epoch`: log, evaluate, checkpoint, stop on request or when
  every member diverged. Returns (params, opt_state, loop record)."""
  cfg0, M = members[0].config, len(members)
  num_epochs = cfg0.num_epochs
  undefined = finish.undefined_quantities(cfg0)  # one model family per group
  epoch_times, last_train, last_test = [], [{} for _ in members], None
  # The bar is closed on any exit, so that an error's line starts a line of its own.
  with tqdm(total=num_epochs, initial=start_epoch, disable=not is_main, unit="epoch",
            desc=members[0].workdir.name if M == 1 else f"{group_name or 'group'} x{M}",
            mininterval=1.0, dynamic_ncols=True) as bar:
    for epoch in range(start_epoch, num_epochs):
      if stop.signum is not None and jax.process_count() == 1:  # arrived while compiling
        raise signals.Interrupted(stop.signum, epoch)
      t0 = time.perf_counter()
      params, opt_state, metrics = run_epoch(params, opt_state, epoch)
      metrics = jax.device_get(metrics)
      dt = time.perf_counter() - t0
      epoch_times.append(dt)
      train_seconds += dt
      last_epoch = epoch + 1 == num_epochs
      _mark_diverged(members, metrics["nonfinite_step"], steps_per_epoch, is_main)
      if all(m.failed for m in members):
        raise DivergenceError(members[0].failed)

      test = None
      if (epoch + 1) % cfg0.eval_every_epochs == 0 or last_epoch:
        test = last_test = evaluate(params)
      for i, m in enumerate(members):
        if m.failed:
          continue
        scalars = {f"train/{k}": float(v[i]) for k, v in metrics.items() if k != "nonfinite_step"}
        scalars.update({"train/epoch": epoch + 1, "train/seconds": train_seconds,
                        "train/examples_per_s": steps_per_epoch * cfg0.batch_size / dt})
        if test is not None:
          scalars.update({f"test/{k}": float(v[i]) for k, v in test.items()})
        scalars = {k: v for k, v in scalars.items() if k not in undefined}  # an AE's KL, ...
        m.writer.log((epoch + 1) * steps_per_epoch, scalars)
        last_train[i] = scalars

      saved = (epoch + 1) % cfg0.checkpoint_every_epochs == 0 or last_epoch
      if saved:
        _save(members, epoch + 1, params, opt_state)
      bar.set_postfix(_postfix(metrics, last_test))
      bar.update(1)
      # Every process stops at the same epoch when a signal reached any of them.
      if hosts.any_process(stop.signum is not None) and not last_epoch:
        if not saved:
          _save(members, epoch + 1, params, opt_state)
        raise signals.Interrupted(stop.signum or signal.SIGTERM, epoch + 1,
                                  by_peer=stop.signum is None)
  return params, opt_state, {"epoch_times": epoch_times, "last_train": last_train,
                             "last_test": last_test, "train_seconds": train_seconds}


def _mark_diverged(members, nonfinite_step, steps_per_epoch: int, is_main: bool) -> None:
  """Marks the members whose loss or gradients became NaN/Inf this epoch (`nonfinite_step`:
  the first such step per member, -1 for none): DIR/failed.json, and their line printed."""
  for i, m in enumerate(members):
    bad = int(nonfinite_step[i])
    if bad >= 0 and m.failed is None:
      m.failed = faults.divergence_message(m.config, m.workdir, bad, steps_per_epoch,
                                           m.ckpt.latest_epoch())
      if is_main:
        files.write_json(m.workdir / "failed.json", {"error": m.failed, "step": bad})
        tqdm.write(f"{m.workdir}: {m.failed}")


def _postfix(metrics, last_test) -> dict:
  postfix = {"loss": f"{metrics['loss'][0]:.2f}",
             "test_elbo": f"{last_test['neg_elbo'][0]:.2f}" if last_test is not None else "-"}
  if last_test is not None and "neg_iwae" in last_test:
    postfix["test_iwae"] = f"{last_test['neg_iwae'][0]:.2f}"
  return postfix


def _save(members, epoch, params, opt_state):
  for i, m in enumerate(members):
    if m.failed:
      continue  # keep its last good checkpoint
    take = lambda a, i=i: a[i]
    m.ckpt.save(epoch, jax.tree.map(take, params), jax.tree.map(take, opt_state))


def _close(members, after_error: bool = False):
  """Closes each member's checkpointer and writer. `after_error`: the run is ending in an
  exception, which is the one reported; the same fault met again while closing is not."""
  for m in members:
    for closer in (m.ckpt, m.writer):
      if closer is not None:
        try:
          closer.close()
        except Exception:  # pylint: disable=broad-except
          if not after_error:
            raise
    m.ckpt = m.writer = None
