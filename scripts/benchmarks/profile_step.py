r"""Where a training step's time goes on CPU: its FLOPs and FLOP rate, and
XLA's kernels timed by JAX's profiler, grouped by what they do.

    python -m scripts.benchmarks.profile_step --gin_file=codelab.gin
    python -m scripts.benchmarks.profile_step --gin_file=reformer_copy.gin --calls=2 \
        --top=30 --gin_param='models.ReformerLM.n_hashes = 4'
    python -m scripts.benchmarks.profile_step --lengths=4096,16384,65536 \
        --calls=1 --json=docs/benchmarks/profile_length.json

--lengths profiles the length benchmark's ReformerLM (`scripts.benchmarks.
length`'s model at its default sizes) at each length instead of a gin file.

For each experiment: builds its training run (as `experiments.main` does,
in a temporary directory), runs two untimed calls of its compiled step loop
(the first compiles), then traces --calls calls of up to 100 steps each.
Reports, per training step:

- the wall time; the FLOPs of the step's matrix products (every dot of the
  compiled step loop, times the trip counts of the loops around it, the
  step loop itself once) and the rate they run at, beside the float32
  matrix-multiply rate measured in the same run. XLA's cost analysis is
  printed too, but it counts each loop body once (trax's attention loops
  over hashes, the chunked feed-forward over chunks), so it undercounts;
- the time XLA:CPU's threads were busy (summed over threads, so it can
  exceed the wall time) and the host's share: the wall time in which no
  XLA thread ran a kernel (Python, dispatch, the profiler);
- the kernels' time by kind (matrix products, sorts, gathers and scatters,
  elementwise and reductions, copies and transposes, random bits), by layer
  (attention, feed-forward, the other layers, the optimizer update) and
  by pass (forward, backward, the forward recomputed inside the backward,
  the update), read from each kernel's HLO
  instruction and the layer it was traced in;
- the --top kernels by busy time with their HLO names.

The layers are named by wrapping each trax layer's call in
`jax.named_scope` while the run is built and compiled: that changes only
the HLO's metadata, not what it computes.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import glob
import os
import re
import sys
import tempfile
import time
from typing import Iterator, Sequence

from absl import flags

from experiments import cli, config
from experiments.errors import ConfigError
from scripts.benchmarks import common, length, train

FLAGS = flags.FlagValues()
flags.DEFINE_string('gin_file', None, 'The experiment to profile.',
                    flag_values=FLAGS)
flags.DEFINE_multi_string('gin_param', [], 'Extra gin bindings.',
                          flag_values=FLAGS)
flags.DEFINE_list('lengths', [], 'Profile the length benchmark\'s ReformerLM '
                  'at these lengths instead of --gin_file.', flag_values=FLAGS)
flags.DEFINE_integer('calls', 5, 'Traced calls of the step loop.',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('top', 20, 'Kernels to list.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_string('json', None, 'Also save the figures here.',
                    flag_values=FLAGS)

# XLA:CPU runs a program's kernels on threads of this name; one
# `ThunkExecutor::Execute` event per thread spans the kernels it ran. The
# threads' other events mark a kernel's end or the pool's bookkeeping.
_KERNEL_THREAD = 'tf_XLAEigen'
_EXECUTOR = 'ThunkExecutor::'
_NOT_KERNELS = ('end: ', 'ThreadpoolListener::')

KINDS = ('matrix products', 'sorts', 'gathers and scatters',
         'elementwise and reductions', 'copies and transposes', 'random bits',
         'other')
LAYERS = ('attention', 'feed-forward', 'other layers', 'update')
PASSES = ('forward', 'backward', 'recomputed forward', 'update')
# Control flow: their events span the kernels of their bodies, which are
# counted themselves.
_CONTAINERS = {'while', 'call', 'conditional'}
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.-]+) = .*? ([\w-]+)\(')


@dataclasses.dataclass(frozen=True)
class Kernel:
    kind: str
    layer: str
    pass_: str


def _kind(opcodes: set[str]) -> str:
    if opcodes & {'dot', 'convolution'}:
        return 'matrix products'
    if 'sort' in opcodes:
        return 'sorts'
    if opcodes & {'gather', 'scatter', 'dynamic-slice',
                  'dynamic-update-slice'}:
        return 'gathers and scatters'
    if opcodes & {'rng-bit-generator', 'xor', 'shift-right-logical'}:
        return 'random bits'  # threefry's arithmetic, fused
    if opcodes <= {'copy', 'transpose', 'bitcast', 'parameter', 'tuple',
                   'get-tuple-element', 'constant'}:
        return 'copies and transposes'
    return 'elementwise and reductions'


def _scopes(op_name: str) -> list[str]:
    """The name stack's segments without JAX's transform wrappers:
    'transpose(jvp(Chunk))' -> 'Chunk'."""
    return [re.sub(r'^(?:\w+\()+|\)+$', '', s) for s in op_name.split('/')]


# Scopes that mark a layer group. trax's efficient attention computes its
# own gradient, and that backward pass (recomputing the forward) is traced in
# the scope of the ReversibleSerial that holds it, as are the attention
# block's sublayers that the reversible backward calls: everything in a
# ReversibleSerial that is not its feed-forward is attention.
_FEED_FORWARD = ('DecoderFF', 'BatchLeadingAxes', 'Scan', 'Chunk',
                 'FeedForward')
_ATTENTION = ('Attention', 'Attn', 'ReversibleSerial')


def _layer(op_name: str) -> str:
    scopes = [s for s in _scopes(op_name) if s[:1].isupper()]
    if not scopes:  # outside every trax layer: the optimizer, the loop
        return 'update'
    if any(marker in s for s in scopes for marker in _FEED_FORWARD):
        return 'feed-forward'
    if any(marker in s for s in scopes for marker in _ATTENTION):
        return 'attention'
    return 'other layers'


def _pass(op_name: str) -> str:
    """Forward ops traced inside the backward pass are recomputation: trax's
    efficient attention's own backward, jax.remat's rematted computation (the
    chunked feed-forward's Scan), and what a loop's transpose recomputes."""
    segments = op_name.split('/')
    if 'rematted_computation' in segments:
        return 'recomputed forward'
    backward = [i for i, s in enumerate(segments)
                if s.startswith('transpose(')]
    forward = [i for i, s in enumerate(segments) if s.startswith('jvp(')]
    if backward:
        return ('recomputed forward' if forward and forward[-1] > backward[-1]
                else 'backward')
    return 'forward' if forward else 'update'


def hlo_kernels(hlo_text: str) -> dict[str, Kernel | None]:
    """Each instruction of a compiled module: its kind (from its opcode, or
    the opcodes a fusion calls), layer and pass (from its metadata's
    op_name); None for control flow, whose events span other kernels."""
    computations: dict[str, set[str]] = {}
    calls: dict[str, list[str]] = {}
    instructions: dict[str, tuple[str, str, list[str]]] = {}
    current = None
    for line in hlo_text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith('{'):
            current = line.split()[1 if line.startswith('ENTRY') else 0]
            current = current.lstrip('%')
            computations[current], calls[current] = set(), []
            continue
        match = _INSTRUCTION.match(line)
        if not match or current is None:
            continue
        name, opcode = match.groups()
        called = re.findall(r'calls=%?([\w.-]+)', line)
        computations[current].add(opcode)
        calls[current] += called
        op_name = re.search(r'op_name="([^"]*)"', line)
        instructions[name] = (opcode, op_name.group(1) if op_name else '',
                              called)

    def opcodes(computation: str, seen=()) -> set[str]:
        found = set(computations.get(computation, ()))
        for inner in calls.get(computation, ()):
            if inner not in seen:
                found |= opcodes(inner, (*seen, computation))
        return found

    kernels = {}
    for name, (opcode, op_name, called) in instructions.items():
        if opcode in _CONTAINERS:
            kernels[name] = None
            continue
        inner = {opcode} if opcode != 'fusion' else set().union(
            *(opcodes(c) for c in called))
        kernels[name] = Kernel(_kind(inner), _layer(op_name), _pass(op_name))
    return kernels


_SHAPE = re.compile(r'^\s*(?:ROOT )?%?([\w.-]+) = \w+\[([\d,]*)\]')


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.split(',') if d]


def product_flops(hlo_text: str) -> float:
    """FLOPs of the matrix products (dot instructions, 2 per multiply-add)
    of a compiled module, each counted as often as its loops run it: a
    while loop whose trip count XLA knows multiplies its body; one it does
    not (the step loop, whose length is an argument) runs it once. XLA's own
    cost analysis counts every loop body once."""
    shapes: dict[str, list[int]] = {}
    dots: dict[str, list[tuple[list[int], str, str]]] = {}
    callees: dict[str, list[tuple[str, int]]] = {}
    current, entry = None, None
    for line in hlo_text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith('{'):
            words = line.split()
            current = words[1 if words[0] == 'ENTRY' else 0].lstrip('%')
            entry = current if words[0] == 'ENTRY' else entry
            dots[current], callees[current] = [], []
            continue
        shape = _SHAPE.match(line)
        if shape:
            shapes[shape.group(1)] = _dims(shape.group(2))
        match = _INSTRUCTION.match(line)
        if not match or current is None:
            continue
        opcode = match.group(2)
        if opcode == 'dot':
            lhs = re.search(r' dot\(%?([\w.-]+)', line).group(1)
            contracting = re.search(r'lhs_contracting_dims=\{([\d,]*)\}',
                                    line)
            dots[current].append((_dims(shape.group(2)) if shape else [],
                                  lhs, contracting.group(1)
                                  if contracting else ''))
        trips = re.search(r'known_trip_count":\{"n":"(\d+)"', line)
        for key in ('body', 'calls', 'to_apply'):
            for callee in re.findall(key + r'=%?([\w.-]+)', line):
                callees[current].append((callee, int(trips.group(1))
                                         if trips and key == 'body' else 1))
        for group in re.findall(r'branch_computations=\{([^}]*)\}', line):
            callees[current] += [(c.strip().lstrip('%'), 1)
                                 for c in group.split(',')]

    def flops(computation: str, seen=()) -> float:
        total = 0.0
        for out, lhs, contracting in dots.get(computation, ()):
            lhs_dims = shapes.get(lhs, [])
            inner = 1
            for d in _dims(contracting):
                inner *= lhs_dims[d] if d < len(lhs_dims) else 1
            size = 1
            for d in out:
                size *= d
            total += 2.0 * size * inner
        for callee, times in callees.get(computation, ()):
            if callee not in seen:
                total += times * flops(callee, (*seen, computation))
        return total

    return flops(entry) if entry else 0.0


def _union_ns(spans: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for start, stop in sorted(spans):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


@dataclasses.dataclass
class Trace:
    total: collections.Counter  # ns per kernel name
    count: collections.Counter  # runs per kernel name
    busy_ns: int  # summed over threads
    any_busy_ns: int  # wall time in which some XLA thread ran


def kernel_times(trace_dir: str) -> Trace:
    import jax
    paths = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                      recursive=True)
    if not paths:
        raise RuntimeError(f'the profiler wrote no trace under {trace_dir}')
    total, count = collections.Counter(), collections.Counter()
    busy, every = 0, []
    for plane in jax.profiler.ProfileData.from_file(paths[0]).planes:
        for line in plane.lines:
            if not line.name.startswith(_KERNEL_THREAD):
                continue
            spans = []
            for event in line.events:
                if event.name.startswith(_EXECUTOR):
                    spans.append((event.start_ns,
                                  event.start_ns + event.duration_ns))
                elif not event.name.startswith(_NOT_KERNELS):
                    total[event.name] += event.duration_ns
                    count[event.name] += 1
            busy += _union_ns(spans)  # an executor may run inside another
            every += spans
    return Trace(total, count, busy, _union_ns(every))


def shares(trace: Trace, kernels: dict[str, Kernel]) -> dict[str, dict]:
    """Kernel time by kind, layer and pass, as shares of the kernels' time
    that the HLO names (containers left out)."""
    by = {'kind': collections.Counter(), 'layer': collections.Counter(),
          'pass': collections.Counter()}
    for name, ns in trace.total.items():
        kernel = kernels.get(name)
        if kernel is None:  # control flow, or not in the HLO
            continue
        by['kind'][kernel.kind] += ns
        by['layer'][kernel.layer] += ns
        by['pass'][kernel.pass_] += ns
    out = {}
    for axis, counter in by.items():
        whole = sum(counter.values()) or 1
        out[axis] = {k: v / whole for k, v in counter.items()}
    return out


def format_report(result: dict, top: int) -> str:
    us = lambda s: s * 1e6  # noqa: E731
    lines = [
        f'{result["steps"]} steps: wall {us(result["wall_s_per_step"]):.0f} '
        f'us/step; XLA threads busy {us(result["busy_s_per_step"]):.0f} '
        f'us/step; {result["kernels_per_step"]:.0f} kernels/step',
        f'matrix products {result["step_gflop"]:.3f} GFLOP/step '
        f'(XLA\'s cost analysis, loop bodies once: '
        f'{result["xla_cost_gflop"]:.3f}), {result["gflop_per_s"]:.2f} GFLOP/s '
        f'({result["share_of_matmul_rate"]:.1%} of the matmul rate); '
        f'host (no XLA thread busy): {result["host_share"]:.1%} of the wall '
        'time']
    for axis, order in (('kind', KINDS), ('layer', LAYERS),
                        ('pass', PASSES)):
        parts = result['shares'][axis]
        lines.append(f'by {axis}: ' + ', '.join(
            f'{k} {parts[k]:.1%}' for k in order if parts.get(k)))
    lines += ['| kernel | us/step | share of busy | runs/step |',
              '|---|---|---|---|']
    lines += [f'| {k["name"]} | {k["us_per_step"]:.1f} | '
              f'{k["share_of_busy"]:.1%} | {k["runs_per_step"]:.0f} |'
              for k in result['kernels'][:top]]
    return '\n'.join(lines)


def summary_table(results: Sequence[dict], matmul_rate: float) -> str:
    """Two tables, a row per profiled experiment: the step's rate, and its
    kernels' time by kind, layer and pass."""
    columns = [('kind', k) for k in KINDS[:5]] + [
        ('layer', k) for k in LAYERS] + [('pass', k) for k in PASSES[1:3]]
    lines = ['| experiment | s/step | matrix-product GFLOP/step | XLA cost '
             'analysis GFLOP | GFLOP/s | share of matmul rate | host |',
             '|---' * 7 + '|']
    lines += [f'| {r["label"]} | {r["wall_s_per_step"]:.3f} | '
              f'{r["step_gflop"]:.2f} | {r["xla_cost_gflop"]:.2f} | '
              f'{r["gflop_per_s"]:.1f} | {r["share_of_matmul_rate"]:.1%} | '
              f'{r["host_share"]:.1%} |' for r in results]
    lines += ['', 'Shares of the kernels\' time:', '',
              '| experiment | ' + ' | '.join(k for _, k in columns) + ' |',
              '|---' * (1 + len(columns)) + '|']
    lines += [f'| {r["label"]} | ' + ' | '.join(
        f'{r["shares"][axis].get(k, 0):.0%}' for axis, k in columns) + ' |'
        for r in results]
    lines.append(f'\nfloat32 matmul rate in the same run (2048 x 2048): '
                 f'{matmul_rate / 1e9:.1f} GFLOP/s')
    return '\n'.join(lines)


@contextlib.contextmanager
def layer_scopes() -> Iterator[None]:
    """Traces every trax layer's call inside a named scope of its name, so
    the HLO's op_names say which layer each instruction belongs to."""
    import jax
    from models.trax_bridge import tl
    pure_fn = tl.Layer.pure_fn

    def scoped(self, *args, **kwargs):
        with jax.named_scope(self.name):
            return pure_fn(self, *args, **kwargs)

    tl.Layer.pure_fn = scoped
    try:
        yield
    finally:
        tl.Layer.pure_fn = pure_fn


def profile(label: str, gin_file: str, gin_params: Sequence[str],
            calls: int, matmul_rate: float) -> dict:
    config.parse([gin_file], gin_params)
    experiment = config.build_experiment()
    import jax
    import numpy as np
    from experiments import training
    training.start_jax(experiment)
    if jax.default_backend() != 'cpu':
        raise ConfigError('profile_step reads XLA:CPU traces; this JAX runs '
                          f'on {jax.default_backend()}')
    with tempfile.TemporaryDirectory() as tmp, layer_scopes():
        run = training.TrainingRun(experiment, os.path.join(tmp, 'run'))
        stream = experiment.task.stream('train')
        compiled = {}

        def call() -> int:
            batches = [next(stream) for _ in range(run.steps_per_call)]
            np.asarray(run.train_steps(batches))  # waits for the call
            return len(batches)

        # The loop's compiled program, for its HLO and cost analysis: the
        # jitted function, lowered with the arguments of a real call.
        jitted = run._train_steps

        def spy(*args):
            compiled.setdefault('program', jitted.lower(*args).compile())
            return jitted(*args)

        run._train_steps = spy
        print(f'{label}: compiling and warming up ({run.steps_per_call} '
              'steps per call) ...', flush=True)
        call(), call()
        trace_dir = os.path.join(tmp, 'trace')
        with jax.profiler.trace(trace_dir):
            start = time.perf_counter()
            steps = sum(call() for _ in range(calls))
            wall_s = time.perf_counter() - start
        trace = kernel_times(trace_dir)
    program = compiled['program']
    cost = program.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    hlo = program.as_text()
    flops = product_flops(hlo)
    kernels = hlo_kernels(hlo)
    per_step = wall_s / steps
    return {
        'label': label, 'gin_file': gin_file, 'gin_params': list(gin_params),
        'steps': steps, 'wall_s_per_step': per_step,
        'busy_s_per_step': trace.busy_ns / 1e9 / steps,
        'host_share': max(0.0, 1 - trace.any_busy_ns / 1e9 / wall_s),
        'kernels_per_step': sum(trace.count.values()) / steps,
        'step_gflop': flops / 1e9, 'gflop_per_s': flops / per_step / 1e9,
        'xla_cost_gflop': float(cost['flops']) / 1e9,
        'share_of_matmul_rate': flops / per_step / matmul_rate,
        'shares': shares(trace, kernels),
        'kernels': [{'name': name, 'us_per_step': ns / steps / 1e3,
                     'share_of_busy': ns / max(trace.busy_ns, 1),
                     'runs_per_step': trace.count[name] / steps,
                     **(dataclasses.asdict(kernels[name])
                        if kernels.get(name) else {})}
                    for name, ns in trace.total.most_common()
                    if kernels.get(name, True) is not None]}


def _targets() -> list[tuple[str, str, list[str]]]:
    """(label, gin file, bindings) for each experiment to profile."""
    if FLAGS.lengths:
        if FLAGS.gin_file or FLAGS.gin_param:
            raise ConfigError('give --lengths or --gin_file, not both')
        model = length.MODELS['reformer']
        settings = length.Settings(**{
            field.name: length.FLAGS[field.name].default
            for field in dataclasses.fields(length.Settings)})
        # Two steps per call in the warm-up and each traced call.
        return [(f'ReformerLM at {n:,}', model.gin_file, length.gin_params(
            model, settings, n, 2, 1)) for n in length.parse_lengths(
                FLAGS.lengths)]
    if not FLAGS.gin_file:
        raise ConfigError('give --gin_file, the experiment to profile, or '
                          '--lengths')
    return [(FLAGS.gin_file, FLAGS.gin_file, FLAGS.gin_param)]


def _command(args: list[str]) -> int:
    targets = _targets()
    if FLAGS.json:
        common.check_inputs(FLAGS.json)
    for _, gin_file, params in targets:  # every one builds, before any runs
        config.parse([gin_file], params)
        config.build_experiment()
    matmul_rate = train.matmul_flops_per_second()
    print(f'float32 matmul: {matmul_rate / 1e9:.1f} GFLOP/s', flush=True)
    results = []
    for label, gin_file, params in targets:
        result = profile(label, gin_file, params, FLAGS.calls, matmul_rate)
        print(f'{label}, {gin_file}:')
        print(format_report(result, FLAGS.top), flush=True)
        results.append(result)
    print()
    print(summary_table(results, matmul_rate))
    if FLAGS.json:
        common.save_json(FLAGS.json, {'matmul_flops_per_s': matmul_rate,
                                      'calls': FLAGS.calls,
                                      'results': results})
    return 0


def main(argv: Sequence[str]) -> int:
    return cli.run(FLAGS, argv, __doc__, _command)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
