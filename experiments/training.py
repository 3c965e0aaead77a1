"""The training root: one experiment, bound to trax's accelerated Trainer.

`Experiment` is the single gin-configurable root (registered as
`experiments.Experiment`); it validates everything it is given on
construction, so `--dry_run` and a real run reject the same mistakes before
anything compiles. `train` runs it: seeded data and RNG per step, periodic
evaluation, TensorBoard summaries, atomic checkpoints and resumption.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys
import time
from typing import Callable, Sequence

import gin
import jax
from jax import numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np
from models.trax_bridge import shapes, tl, trax

from experiments import checkpoints
from experiments import decoding
from experiments import distributed
from experiments import mirror
from experiments.errors import ConfigError, TrainingError
from experiments import manifest
from experiments import run_dir
from experiments import summaries
from experiments import xla_cpu
from experiments.summaries import SummaryWriter
from models.language_models import LanguageModel
from tasks import Task

METRIC_NAMES = ('loss', 'accuracy', 'sequence_accuracy')
# Steps per compiled call: enough to make per-call overhead vanish, few enough
# that the stacked batches stay small (they are copied to the device at once).
MAX_STEPS_PER_CALL = 100
MAX_CALL_BATCH_BYTES = 64 << 20


def _metric_layers():
    """Loss and metrics over (logits, targets, weights), in METRIC_NAMES order."""
    return [tl.WeightedCategoryCrossEntropy(), tl.WeightedCategoryAccuracy(),
            tl.SequenceAccuracy()]


def with_loss(model: LanguageModel) -> tl.Layer:
    """The layer training runs: `model` in train mode, then the loss."""
    return tl.Serial(model('train'), tl.WeightedCategoryCrossEntropy())


def with_metrics(model: LanguageModel) -> tl.Layer:
    """The layer evaluation runs: `model` in eval mode, then loss and
    metrics."""
    return tl.Serial(model('eval'), tl.Branch(*_metric_layers()))


def fresh_state_keys(seed: int):
    """(init, call) keys of an evaluation whose model state is made fresh
    (LSH hash keys at another length or hash count): experiments.evaluate's
    and training's at eval_lengths, so that both score the same."""
    return jax.random.PRNGKey(seed), jax.random.PRNGKey(seed)


def fits(tree, reference) -> bool:
    """Whether `tree` has `reference`'s structure and leaf shapes."""
    return (jax.tree_util.tree_structure(tree)
            == jax.tree_util.tree_structure(reference)
            and all(np.shape(a) == np.shape(b) for a, b in zip(
                jax.tree_util.tree_leaves(tree),
                jax.tree_util.tree_leaves(reference))))


class Evaluation:
    """The one teacher-forced evaluation: `model`'s loss and metrics (eval
    mode) averaged over batches, compiled once. Training's periodic eval and
    experiments.evaluate both run it.

    `place` puts arrays where the model's weights are (a training run's
    device mesh); `on_call` runs after each batch.
    """

    def __init__(self, model: LanguageModel, signature, init_rng, rng,
                 place: Callable = lambda tree: tree,
                 place_batch: Callable = lambda batch: batch,
                 on_call: Callable[[], None] = lambda: None):
        layer = with_metrics(model)
        layer.init(signature, rng=init_rng)
        self.initial_model_state = layer.state[0]
        self._forward = jax.jit(layer.pure_fn)
        self._own = place((layer.weights[1], layer.state[1]))
        self._rng, self._place_batch, self._on_call = rng, place_batch, on_call

    def fitting_state(self, saved):
        """`saved` (a trained run's model state) where it fits this model,
        else its seeded initial state: at the trained settings evaluation
        sees the LSH hash keys that training's did; at other lengths or
        hash settings the keys are shaped otherwise."""
        return saved if fits(saved, self.initial_model_state) else (
            self.initial_model_state)

    def __call__(self, weights, state, batches) -> dict[str, float]:
        """METRIC_NAMES -> mean over `batches`, for the model's `weights`
        and `state`."""
        own_weights, own_state = self._own
        totals, n = np.zeros(len(METRIC_NAMES)), 0
        for batch in batches:
            values, _ = self._forward(self._place_batch(batch),
                                      (weights, own_weights),
                                      (state, own_state), self._rng)
            totals += np.asarray(values, dtype=np.float64)
            n += 1
            self._on_call()
        return {name: float(v) for name, v in zip(METRIC_NAMES, totals / n)}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a training run needs; see gin_configs/common/ for defaults.

    optimizer: a trax optimizer class (gin: `@trax.optimizers.Adafactor`).
    lr_schedule: step -> learning rate (gin: `@multifactor()`); None keeps the
      optimizer's own learning rate.
    eval_every / checkpoint_every: cadence in steps; the last step always
      evaluates and checkpoints.
    n_devices: data-parallel devices; None uses every device (of every
      process, in a run over several: experiments/distributed.py).
    decode_eval_every: every this many steps (a multiple of eval_every, and
      at the last step) also measure exact_match: the share of eval examples
      whose whole answer the model generates itself (greedy, predict mode).
      0 turns it off.
    eval_lengths: other task lengths evaluated alongside (length
      generalisation): each metric also as `<metric>@<length>`, decoded
      ones too at decoding evaluations. The model must take each length.
    cpu_threads: XLA:CPU's thread pool. Part of the experiment, like the
      seed: other pool sizes give other bits (experiments/xla_cpu.py), so
      the default is a fixed 2, not one per core, and a resume in a process
      with another pool is refused. A small model's step is hundreds of
      tiny kernels, and one thread runs them sooner than two (codelab.gin).
      JAX's CPU client takes it when it starts, so the commands start JAX
      with it (`start_jax`) once the experiment is built; elsewhere (a
      notebook, the test process) the process keeps its pool, logs it, and
      records the pool it used.

    Building one is pure: it checks the settings against each other and
    starts nothing, so a file's validity does not depend on the machine
    that parses it. `resolved_n_devices` checks the devices where they are
    used.
    """

    task: Task
    model: LanguageModel
    n_steps: int
    optimizer: Callable[[], trax.optimizers.Optimizer] = trax.optimizers.Adam
    lr_schedule: Callable[[int], float] | None = None
    eval_every: int = 100
    n_eval_batches: int = 4
    checkpoint_every: int = 500
    seed: int = 0
    n_devices: int | None = None
    decode_eval_every: int = 0
    cpu_threads: int = xla_cpu.DEFAULT_THREADS
    eval_lengths: Sequence[int] = ()

    def __post_init__(self):
        if (not isinstance(self.cpu_threads, int)
                or isinstance(self.cpu_threads, bool)
                or not 1 <= self.cpu_threads <= xla_cpu.MAX_THREADS):
            raise ValueError('Experiment.cpu_threads must be an int from 1 to '
                             f'{xla_cpu.MAX_THREADS}, got {self.cpu_threads!r}')
        for field in ('n_steps', 'eval_every', 'n_eval_batches',
                      'checkpoint_every'):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or (
                    value < 1):
                raise ValueError(f'Experiment.{field} must be a positive int, '
                                 f'got {value!r}')
        if (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                or not 0 <= self.seed < 2**32):
            raise ValueError('Experiment.seed must be an int in [0, 2**32), '
                             f'got {self.seed!r}')
        if self.n_devices is not None and (
                not isinstance(self.n_devices, int) or self.n_devices < 1):
            raise ValueError('Experiment.n_devices must be None or a positive '
                             f'int, got {self.n_devices!r}')
        if not callable(self.optimizer):
            raise ValueError('Experiment.optimizer must be an optimizer class '
                             'such as @trax.optimizers.Adafactor, got '
                             f'{self.optimizer!r}')
        if self.lr_schedule is not None and not callable(self.lr_schedule):
            raise ValueError('Experiment.lr_schedule must be None or a '
                             'schedule such as @lr_schedules.multifactor(), '
                             f'got {self.lr_schedule!r}')
        if not isinstance(self.task, Task):
            raise ValueError('Experiment.task must be a task such as '
                             f'@tasks.copy(), got {self.task!r}')
        if not isinstance(self.model, LanguageModel):
            raise ValueError('Experiment.model must be a model such as '
                             f'@models.ReformerLM(), got {self.model!r}')
        if (not isinstance(self.decode_eval_every, int)
                or isinstance(self.decode_eval_every, bool)
                or self.decode_eval_every < 0
                or self.decode_eval_every % self.eval_every):
            raise ValueError(
                'Experiment.decode_eval_every must be 0 (off) or a multiple '
                f'of eval_every={self.eval_every}, got '
                f'{self.decode_eval_every!r}')
        if not isinstance(self.eval_lengths, (list, tuple)) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1
                for n in self.eval_lengths):
            raise ValueError('Experiment.eval_lengths must be a list of '
                             f'positive ints, got {self.eval_lengths!r}')
        object.__setattr__(self, 'eval_lengths', tuple(self.eval_lengths))
        for length in (self.task.length,) + self.eval_lengths:
            try:
                self.model.check(length, self.task_at(length).vocab_size)
                if self.decode_eval_every:
                    decoding.check_decodable(self.model, length)
            except ValueError as e:
                if length == self.task.length:
                    raise
                raise type(e)(f'Experiment.eval_lengths: at {length}: {e}'
                              ) from e

    def task_at(self, length: int):
        """The task with its sequences `length` long."""
        return dataclasses.replace(self.task, length=length)

    def resolved_n_devices(self) -> int:
        """The devices the batch is split over, checked against the run's
        devices (starting JAX if nothing has). A run over several processes
        uses all of them, so that each process has its share."""
        available = jax.device_count()
        n_devices = available if self.n_devices is None else self.n_devices
        if jax.process_count() > 1 and n_devices != available:
            raise ConfigError(
                f'Experiment.n_devices={self.n_devices!r}: a run over '
                f'{jax.process_count()} processes uses all {available} '
                'devices (leave n_devices unset)')
        if not 1 <= n_devices <= available:
            raise ConfigError(f'Experiment.n_devices={self.n_devices!r}, but '
                              f'{available} device(s) are available')
        if self.task.batch_size % n_devices:
            raise ConfigError(
                f'batch size {self.task.batch_size} is not divisible by the '
                f'{n_devices} devices used for data parallelism')
        return n_devices


def activation_size(model, n_sequences: int, length: int) -> int:
    """Numbers in the model's widest activation for `n_sequences`."""
    return n_sequences * length * max(model.d_model, model.d_ff,
                                      model.vocab_size)


def check_memory(what: str, n_numbers: int) -> None:
    """Refuses `what` if `n_numbers` float32s at once exceed this machine's
    memory: an impossible size, reported before anything is allocated."""
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    if 4 * n_numbers > memory:
        raise ConfigError(
            f'{what} needs {4 * n_numbers / 2**30:.3g} GiB at once; this '
            f'machine has {memory / 2**30:.3g} GiB')


def start_jax(experiment: Experiment) -> int:
    """Starts JAX as `experiment` asks (its XLA:CPU pool) and checks the
    machine can run it (devices, memory for a batch); returns the devices it
    uses. Commands call this once, after building the experiment and before
    anything compiles."""
    check_batch_memory(experiment)
    xla_cpu.start(experiment.cpu_threads)
    return experiment.resolved_n_devices()


def check_batch_memory(experiment: Experiment) -> None:
    """Refuses a batch too big for this machine's memory, naming it."""
    task = experiment.task
    check_memory(f'a batch of tasks.{task.name}.batch_size={task.batch_size} '
                 f'x length={task.length}',
                 activation_size(experiment.model, task.batch_size,
                                 task.length))


def _progress_line(step: int, n_steps: int, train: dict, evals: dict,
                   steps_per_second: float) -> str:
    return (f'step {step:>{len(str(n_steps))}}/{n_steps} | '
            f'train loss {train["loss"]:.4f} acc {train["accuracy"]:.4f} | '
            f'eval loss {evals["loss"]:.4f} acc {evals["accuracy"]:.4f} '
            f'seq_acc {evals["sequence_accuracy"]:.4f} '
            + (f'exact {evals["exact_match"]:.4f} ' if 'exact_match' in evals
               else '') + '| '
            f'{steps_per_second:.1f} steps/s')


def _steps_per_call(experiment: Experiment, batch_bytes: int) -> int:
    """How many steps one compiled call may run: a call ends at the next eval
    or checkpoint anyway, and the batches it takes should stay small."""
    return max(1, min(experiment.eval_every, experiment.checkpoint_every,
                      MAX_STEPS_PER_CALL, MAX_CALL_BATCH_BYTES // batch_bytes))


class TrainingRun:
    """One run's weights, optimizer slots and compiled step loop.

    Training steps run several at a time inside one compiled call (a
    `fori_loop` over a stack of batches), so a step costs no Python work or
    host round trip; the loop's length is an argument, so calls of any length
    share one compile. Devices split the batch (one program over a device
    mesh; XLA inserts the gradient reduction), weights are replicated.
    """

    def __init__(self, experiment: Experiment, output_dir: str):
        self.exp = experiment
        self.output_dir = output_dir
        # Started already by a command; in a notebook or a test, here.
        self.n_devices = start_jax(experiment)
        xla_cpu.unroll_threefry()  # before anything below is compiled
        xla_cpu.standard_form_dots()
        task = experiment.task
        # Separate keys for init, eval and training; a step's key depends only
        # on the step, so a resumed run draws exactly the same numbers.
        self._init_rng, self._eval_rng, self._train_rng = jax.random.split(
            jax.random.PRNGKey(experiment.seed), 3)
        sample = task.batch('train', 0)
        signature = shapes.signature(sample)

        model_with_loss = with_loss(experiment.model)
        model_with_loss.init(signature, rng=self._init_rng)
        optimizer = experiment.optimizer()
        optimizer.tree_init(model_with_loss.weights)
        self._default_learning_rate = float(
            optimizer.opt_params['learning_rate'])

        # Training runs over every process's devices; evaluation and
        # decoding over this process's own (each process evaluates the same
        # batches with its copy of the weights), so with one process both
        # meshes are the same.
        devices = jax.devices()[:self.n_devices]
        mesh = jax.sharding.Mesh(np.array(devices), ('batch',))
        own_mesh = jax.sharding.Mesh(np.array(
            [d for d in devices if d.process_index == jax.process_index()]),
            ('batch',))
        replicated = NamedSharding(mesh, PartitionSpec())
        self._batches_sharding = NamedSharding(
            mesh, PartitionSpec(None, 'batch'))
        # The rows of each batch that this process's devices hold (all of
        # them with one process): the only rows it draws.
        self.own_rows = own_rows(self._batches_sharding,
                                 (1,) + sample[0].shape)
        self._replicate = lambda tree: jax.device_put(tree, replicated)
        self._batch_sharding = NamedSharding(own_mesh, PartitionSpec('batch'))
        own_replicated = NamedSharding(own_mesh, PartitionSpec())
        self._replicate_own = lambda tree: jax.device_put(
            own_copy(tree), own_replicated)
        self._eval_rng = self._replicate_own(self._eval_rng)
        self._train_rng = self._replicate(self._train_rng)

        self.step = 0
        weights, state = model_with_loss.weights, model_with_loss.state
        # Printed and recorded so that comparisons (attention types, sizes)
        # can be made like for like.
        self.n_parameters = int(sum(
            np.size(w) for w in jax.tree_util.tree_leaves(weights)))
        self.about = {'n_parameters': self.n_parameters,
                      'length': task.length}
        slots = optimizer.slots
        restored = checkpoints.load(output_dir, like={
            'weights': weights, 'state': state, 'slots': slots})
        if restored is not None:
            self.step = restored['step']
            weights, state = restored['weights'], restored['state']
            slots = restored['slots']
        self.weights, self.state, self.slots = self._replicate(
            (weights, state, slots))
        # float32 arrays, not Python floats: weakly typed scalars would give
        # the first call a different signature and compile twice.
        self._opt_params = self._replicate(jax.tree_util.tree_map(
            lambda x: np.asarray(x, np.float32), optimizer.opt_params))
        self.steps_per_call = _steps_per_call(
            experiment, sum(x.nbytes for x in sample))
        # Keys and rates are arguments, not constants, so runs that differ
        # only in them (a sweep over seeds) share compiled programs.
        self._train_steps = jax.jit(
            functools.partial(_train_steps, model_with_loss.pure_fn,
                              optimizer),
            donate_argnums=(0, 1, 2),
            out_shardings=(replicated, replicated, replicated, replicated))

        self._evaluations: dict[int, Evaluation] = {}
        self._evaluation = self._evaluation_at(task.length, sample)
        self._called = set()  # the compiled programs called so far

    def _after_call(self, program: str) -> None:
        # A program's first call compiled it: give the compiler's freed
        # memory back before the run's peak is reached.
        if program not in self._called:
            self._called.add(program)
            xla_cpu.release_freed_memory()

    def own_weights_and_state(self):
        """The model's weights and state on this process's devices."""
        return self._replicate_own((self.weights[0], self.state[0]))

    def metrics(self, batches) -> dict[str, float]:
        """Loss and metrics (eval mode, current weights) averaged over batches."""
        return self._evaluation(*self.own_weights_and_state(), batches)

    def evaluate(self, decode: bool = False) -> dict[str, float]:
        """The eval metrics (and, if `decode`, exact_match) at the task's
        length, and as `<metric>@<length>` at each of eval_lengths."""
        evals = {}
        weights, state = self.own_weights_and_state()
        for length in (self.exp.task.length,) + self.exp.eval_lengths:
            task = self.exp.task_at(length)
            batches = [task.batch('eval', i)
                       for i in range(self.exp.n_eval_batches)]
            evaluation = self._evaluation_at(length, batches[0])
            at = evaluation(weights, evaluation.fitting_state(state), batches)
            if decode:
                decoder = decoding.decoder_for(self.exp.model, length,
                                               seed=self.exp.seed)
                at['exact_match'] = decoding.exact_match(decoder, weights,
                                                         batches)
            suffix = '' if length == self.exp.task.length else f'@{length}'
            evals.update({f'{k}{suffix}': v for k, v in at.items()})
        return evals

    def _evaluation_at(self, length: int, sample) -> 'Evaluation':
        """The compiled evaluation of sequences `length` long."""
        if length not in self._evaluations:
            keys = ((self._init_rng, self._eval_rng)
                    if length == self.exp.task.length
                    else fresh_state_keys(self.exp.seed))
            self._evaluations[length] = Evaluation(
                self.exp.model, shapes.signature(sample), *keys,
                place=self._replicate_own,
                place_batch=lambda b: jax.device_put(b, self._batch_sharding),
                on_call=lambda: self._after_call(f'metrics@{length}'))
        return self._evaluations[length]

    def learning_rates(self, first: int, n: int) -> np.ndarray:
        """The schedule's rates for steps first .. first + n - 1."""
        schedule = self.exp.lr_schedule
        if schedule is None:
            return np.full(n, self._default_learning_rate, np.float32)
        # With NumPy, not JAX (trax's schedules are written for either): a
        # JAX op here would queue behind the training call running on the
        # same CPU device, so the next call could not be prepared meanwhile.
        with trax.fastmath.use_backend(trax.fastmath.Backend.NUMPY):
            return np.array([schedule(s) for s in range(first, first + n)],
                            np.float32)

    def learning_rate(self, step: int) -> float:
        return float(self.learning_rates(step, 1)[0])

    def train_steps(self, batches: list) -> jax.Array:
        """Runs one step per batch (at most steps_per_call) in one compiled
        call; returns their losses without waiting for them."""
        n = len(batches)
        if not 1 <= n <= self.steps_per_call:
            raise ValueError(f'train_steps takes 1 to {self.steps_per_call} '
                             f'batches, got {n}')
        first = self.step + 1
        # Padding to a fixed length keeps one compile; the loop stops at n.
        padded = batches + [batches[-1]] * (self.steps_per_call - n)
        global_shape = (self.steps_per_call, self.exp.task.batch_size)
        stacked = tuple(
            _place_rows(np.stack(x), self._batches_sharding, global_shape)
            for x in zip(*padded))
        rates = np.zeros(self.steps_per_call, np.float32)
        rates[:n] = self.learning_rates(first, n)
        self.weights, self.slots, self.state, losses = self._train_steps(
            self.weights, self.slots, self.state, self._opt_params, stacked,
            rates, self._train_rng, np.int32(first), np.int32(n))
        self._after_call('train_steps')
        self.step += n
        return own_copy(losses)[:n]

    def check_finite(self, losses: list, last_step: int) -> None:
        """Raises if any of the losses (arrays of consecutive steps ending at
        `last_step`) is NaN or infinite, naming the first such step."""
        values = np.concatenate([np.asarray(x) for x in losses])
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            step = last_step - len(values) + 1 + int(bad[0])
            self._diverged(f'the loss is {values[bad[0]]} at step {step}')

    def _diverged(self, what: str):
        saved = checkpoints.list_steps(self.output_dir)
        kept = (f'the last good checkpoint (step {saved[-1]}) is kept in '
                f'{self.output_dir}' if saved else 'no checkpoint was written')
        raise TrainingError(f'training diverged: {what}; {kept}. Lower the '
                            'learning rate and rerun with --overwrite.')

    def check_disk(self) -> None:
        """Raises if a checkpoint (written beside the previous one) would not
        fit on the output directory's disk."""
        needed = 2 * checkpoints.size_bytes(
            self.weights, self.state, self.slots) + (16 << 20)  # and events
        free = shutil.disk_usage(
            run_dir.existing_ancestor(self.output_dir)).free
        if free < needed:
            raise TrainingError(
                f'not enough free disk for checkpoints in {self.output_dir}: '
                f'{free / 2**20:.0f} MiB free, {needed / 2**20:.0f} MiB needed')

    def save(self) -> None:
        weights, state, slots = jax.tree_util.tree_map(
            np.asarray, own_copy((self.weights, self.state, self.slots)))
        # A step with a finite loss can still leave non-finite weights.
        if not all(np.isfinite(w).all()
                   for w in jax.tree_util.tree_leaves(weights)):
            self._diverged(f'the weights after step {self.step} are not finite')
        checkpoints.save(self.output_dir, self.step, weights=weights,
                         state=state, slots=slots)


def own_copy(tree):
    """`tree` with each array that spans several processes (replicated) as
    this process's copy of it; arrays within this process stay as they are."""
    return jax.tree_util.tree_map(
        lambda x: x if getattr(x, 'is_fully_addressable', True)
        else x.addressable_data(0), tree)


def own_rows(sharding, shape) -> tuple[int, int]:
    """(start, stop): the rows along axis 1 of an array of `shape` placed
    with `sharding` that this process's devices hold (they are contiguous:
    the mesh lists each process's devices together)."""
    rows = [index[1] for index in
            sharding.addressable_devices_indices_map(shape).values()]
    return (min(r.start or 0 for r in rows),
            max(shape[1] if r.stop is None else r.stop for r in rows))


def drawing_note(task: Task, rows: tuple[int, int]) -> str | None:
    """What to set when a process would draw more rows of each batch than
    the `rows` it holds (the task's seeded streams span more); else None."""
    first, last = task.rows_drawn(rows)
    if (first, last) == tuple(rows):
        return None
    held = rows[1] - rows[0]
    return (f'Note: each process draws {last - first} rows of a batch to use '
            f'the {held} it holds; tasks.{task.name}.rows_per_seed = {held} '
            'would have it draw only those.')


def _place_rows(stacked: np.ndarray, sharding, global_shape) -> jax.Array:
    """This process's rows of a stack of batches (steps x own rows x ...) as
    its part of one array of `global_shape` (steps x batch) split over the
    batch axis."""
    if jax.process_count() == 1:
        return jax.device_put(stacked, sharding)
    return jax.make_array_from_process_local_data(
        sharding, stacked, global_shape + stacked.shape[2:])


def _train_steps(pure_fn, optimizer, weights, slots, state, opt_params,
                 batches, learning_rates, train_rng, first_step, n_steps):
    """Steps first_step .. first_step + n_steps - 1 on batches[0 .. n_steps);
    the same arithmetic as trax's Trainer.one_step, step after step."""
    grad_fn = jax.value_and_grad(pure_fn, argnums=1, has_aux=True)

    def one_step(i, carry):
        weights, slots, state, losses = carry
        step = first_step + i
        batch = jax.tree_util.tree_map(lambda x: x[i], batches)
        (loss, state), grads = grad_fn(
            batch, weights, state, jax.random.fold_in(train_rng, step))
        weights, slots, _ = optimizer.tree_update(
            step, grads, weights, slots,
            {**opt_params, 'learning_rate': learning_rates[i]},
            store_slots=False)
        return weights, slots, state, losses.at[i].set(loss)

    losses = jnp.zeros(learning_rates.shape, jnp.float32)
    return jax.lax.fori_loop(0, n_steps, one_step,
                             (weights, slots, state, losses))


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _final_line(evals: dict[str, float]) -> str:
    return 'Final eval: ' + ', '.join(f'{k} {v:.4f}' for k, v in evals.items())


def _markdown_config(config: str) -> str:
    """Gin config as a TensorBoard text block (indented = verbatim)."""
    return '\n'.join('    ' + line for line in config.splitlines())


def train(experiment: Experiment, output_dir: str,
          log: Callable[[str], None] = print,
          mirror_to: str | None = None) -> dict[str, float]:
    """Trains (or resumes) `experiment` in `output_dir`; returns final eval metrics.

    Writes output_dir/config.gin (the full config) at start,
    output_dir/operative_config.gin, TensorBoard events under train/ and eval/,
    and checkpoints under checkpoints/. In a run over several processes,
    every process calls this; only process 0 writes and logs (checkpoints
    are written by all together). With `mirror_to` (a gs:// path, checked
    by experiments.mirror), process 0 copies output_dir there after each
    checkpoint and at the end.
    """
    run = TrainingRun(experiment, output_dir)
    run.check_disk()  # before anything is written
    exp = experiment
    primary = distributed.is_primary()
    if not primary:
        log, mirror_to = _silent, None
    start = manifest.collect(xla_cpu.pool_size(), run.n_devices)
    starts = manifest.read(output_dir)
    if run.step and starts:
        refusal, warning = manifest.resume_problems(starts[-1], start)
        if refusal:
            raise run_dir.RunDirError(f'cannot resume {output_dir}: {refusal}')
        if warning:
            print(f'warning: {warning}', file=sys.stderr)
    operative = gin.operative_config_str()
    files = _RunFiles(output_dir, primary)
    files.start(starts, start, operative)

    if run.step >= exp.n_steps:
        log(f'{output_dir} already holds a checkpoint at step {run.step} '
            f'(n_steps={exp.n_steps}); evaluating it.')
        evals = run.evaluate()
        files.progress(run.step, exp.n_steps, evals, run.about, finished=True)
        mirror.push(output_dir, mirror_to)
        log(_final_line(evals))
        return evals
    if run.step:
        log(f'Resuming from the checkpoint at step {run.step}'
            + (f' (last start: {manifest.describe(starts[-1])})' if starts
               else '') + '.')
    if exp.model.unread():
        log(f'Note: models.{exp.model.name}: {exp.model.unread()}.')
    note = drawing_note(exp.task, run.own_rows)
    if note:
        log(note)
    log(f'Training {type(exp.model).__name__} '
        f'({run.n_parameters:,} parameters) on {exp.task.name} '
        f'(length {exp.task.length}, batch {exp.task.batch_size}) for '
        f'{exp.n_steps} steps on {run.n_devices} device(s); '
        f'writing to {output_dir}')

    train_writer, eval_writer = files.writers(run.step, operative)
    evals = {}
    try:
        stream = exp.task.stream('train', start=run.step, rows=run.own_rows)
        losses = []  # loss arrays of the steps since the last evaluation
        start_step, start_time = run.step, time.perf_counter()
        while run.step < exp.n_steps:
            # A call runs up to the next eval or checkpoint, whichever is
            # first, so each call ends on a step that needs the host.
            until = min(exp.n_steps, _next_multiple(run.step, exp.eval_every),
                        _next_multiple(run.step, exp.checkpoint_every),
                        run.step + run.steps_per_call)
            batches = [next(stream) for _ in range(until - run.step)]
            losses.append(run.train_steps(batches))
            last = run.step == exp.n_steps
            evaluate_now = run.step % exp.eval_every == 0 or last
            checkpoint_now = run.step % exp.checkpoint_every == 0 or last
            if not (evaluate_now or checkpoint_now):
                continue  # the next call queues behind this one
            run.check_finite(losses, run.step)  # waits for the device
            if evaluate_now:
                # Over the steps since the previous evaluation or
                # checkpoint: a resumed run (which starts at a checkpoint)
                # has those too, so it logs what a run never stopped does.
                since = run.step - max(
                    (run.step - 1) // every * every
                    for every in (exp.eval_every, exp.checkpoint_every))
                train_loss = float(np.mean(np.concatenate(
                    [np.asarray(x) for x in losses])[-since:]))
                steps_per_second = (run.step - start_step) / (
                    time.perf_counter() - start_time)
                # On the whole last batch (with several processes, each
                # may have drawn only its own rows of it).
                train_metrics = {
                    **run.metrics([exp.task.batch('train', run.step - 1)]),
                    'loss': train_loss}
                evals = run.evaluate(decode=bool(exp.decode_eval_every) and (
                    run.step % exp.decode_eval_every == 0 or last))
                train_writer.scalars(run.step, {
                    **{f'metrics/{k}': v for k, v in train_metrics.items()},
                    'training/learning_rate': run.learning_rate(run.step),
                    'training/steps_per_second': steps_per_second})
                eval_writer.scalars(
                    run.step, {f'metrics/{k}': v for k, v in evals.items()})
                train_writer.flush()
                eval_writer.flush()
                log(_progress_line(run.step, exp.n_steps, train_metrics,
                                   evals, steps_per_second))
                files.progress(run.step, exp.n_steps, evals, run.about,
                               steps_per_second)
                losses = []
            if checkpoint_now:
                run.save()
                mirror.push(output_dir, mirror_to)
            # steps/s counts training only
            start_step, start_time = run.step, time.perf_counter()
    finally:
        train_writer.close()
        eval_writer.close()
    files.progress(run.step, exp.n_steps, evals, run.about, finished=True)
    mirror.push(output_dir, mirror_to)
    log(_final_line(evals))
    return evals


def _silent(line: str) -> None:
    del line  # a process other than 0 of a run over several logs nothing


class _NoWriter:
    """Stands in for a SummaryWriter in the processes that write nothing."""

    def scalars(self, step, values) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _RunFiles:
    """What train() writes into the run directory besides checkpoints: the
    manifest, configs, progress and events, all by one process."""

    def __init__(self, output_dir: str, writes: bool):
        self.output_dir, self.writes = output_dir, writes

    def start(self, starts, start, operative: str) -> None:
        if not self.writes:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        manifest.record(self.output_dir, starts, start)
        with open(os.path.join(self.output_dir, 'config.gin'), 'w') as f:
            f.write(gin.config_str())
        with open(os.path.join(self.output_dir, 'operative_config.gin'),
                  'w') as f:
            f.write(operative)

    def writers(self, step: int, operative: str):
        """(train, eval) event writers from `step` on: steps after the
        checkpoint were logged by a killed run and are redone."""
        if not self.writes:
            return _NoWriter(), _NoWriter()
        logged = summaries.compact(os.path.join(self.output_dir, 'train'),
                                   step)
        summaries.compact(os.path.join(self.output_dir, 'eval'), step)
        train_writer = SummaryWriter(os.path.join(self.output_dir, 'train'))
        eval_writer = SummaryWriter(os.path.join(self.output_dir, 'eval'))
        if ('config/operative', step) not in logged:
            train_writer.text(step, 'config/operative',
                              _markdown_config(operative))
        return train_writer, eval_writer

    def progress(self, *args, **kwargs) -> None:
        if self.writes:
            run_dir.write_progress(self.output_dir, *args, **kwargs)


# The gin root: experiment files bind `experiments.Experiment.<field>`.
gin.external_configurable(Experiment, module='experiments')
