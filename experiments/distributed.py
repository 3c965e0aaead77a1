"""One run over several processes, with JAX's multi-controller runtime.

    python -m experiments.main --gin_file=codelab.gin \
        --coordinator_address=host0:8476 --num_processes=2 --process_id=0
    (and --process_id=1 on the other host, or in another shell)

Each process drives its own devices; one program runs over all of them
(`jax.distributed`). On a multi-host TPU slice the three settings come from
the environment the slice's workers get (TPU_WORKER_HOSTNAMES or
TPU_PROCESS_ADDRESSES, and TPU_WORKER_ID), so the same command starts the
run on every worker with no flags. Elsewhere they come from the flags, named
as `jax.distributed.initialize` names them. With neither, a run is one
process, as always.

Only process 0 writes what a run writes besides checkpoints (config,
events, progress, the lock); checkpoints are written by all processes
together (Orbax). `is_primary()` says which process this is.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import NamedTuple

from experiments.errors import ConfigError

# The port the coordinator listens on when the environment names only hosts
# (jax.distributed's default on Cloud TPU).
DEFAULT_PORT = 8476
# How long processes wait for each other at start, in seconds.
DEFAULT_TIMEOUT_S = 120
FLAGS = ('coordinator_address', 'num_processes', 'process_id')


class Cluster(NamedTuple):
    coordinator_address: str
    num_processes: int
    process_id: int


def from_environment(environ=os.environ) -> Cluster | None:
    """The cluster a multi-host TPU slice's environment describes, or None
    (one host, or not a slice)."""
    hosts = (environ.get('TPU_PROCESS_ADDRESSES')
             or environ.get('TPU_WORKER_HOSTNAMES'))
    if not hosts or ',' not in hosts:
        return None
    hosts = hosts.split(',')
    worker = environ.get('TPU_WORKER_ID')
    if worker is None or not worker.isdigit():
        raise ConfigError(f'TPU_WORKER_ID={worker!r}: a multi-host TPU slice '
                          f'({len(hosts)} workers) needs a worker number')
    first = hosts[0] if ':' in hosts[0] else f'{hosts[0]}:{DEFAULT_PORT}'
    return _checked(first, len(hosts), int(worker), 'the environment')


def from_flags(coordinator_address, num_processes,
               process_id) -> Cluster | None:
    """The cluster the three flags describe; None when none is given."""
    given = [v is not None for v in (coordinator_address, num_processes,
                                     process_id)]
    if not any(given):
        return None
    if not all(given):
        missing = [f'--{n}' for n, g in zip(FLAGS, given) if not g]
        raise ConfigError(f'a run over several processes needs all of '
                          f'--{", --".join(FLAGS)}; missing {", ".join(missing)}')
    return _checked(coordinator_address, num_processes, process_id, 'flags')


def _checked(address: str, n: int, process_id: int, source: str) -> Cluster:
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit():
        raise ConfigError(f'coordinator address {address!r} (from {source}) '
                          'must be host:port')
    if n < 1:
        raise ConfigError(f'num_processes={n} (from {source}) must be >= 1')
    if not 0 <= process_id < n:
        raise ConfigError(f'process_id={process_id} (from {source}) is out of '
                          f'range for num_processes={n}: use 0 to {n - 1}')
    return Cluster(address, n, process_id)


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Until process 0's coordinator accepts connections; ConfigError after
    `timeout_s` (a clearer message than start's for the commonest case)."""
    host, _, port = address.rpartition(':')
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f'the coordinator {address} did not answer within '
                    f'{timeout_s:g} s ({e.strerror or e}); start process 0 '
                    'first, or check --coordinator_address') from None
            time.sleep(0.2)


def start(cluster: Cluster | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Joins `cluster` (nothing to do for None or one process). Call before
    anything starts JAX's backends. A process whose peers have not all
    joined after `timeout_s` ends with one error line (status 2)."""
    if cluster is None or cluster.num_processes == 1:
        return
    import jax
    # XLA:CPU's collectives across processes (the CPU stand-in for a slice's
    # interconnect); TPUs and GPUs bring their own.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    deadline = time.monotonic() + timeout_s
    if cluster.process_id:
        _wait_for_coordinator(cluster.coordinator_address, timeout_s)
    joined = threading.Event()
    threading.Thread(target=_exit_unless, daemon=True, args=(
        joined, deadline, _not_joined(cluster, timeout_s))).start()
    try:
        # JAX's own deadline, later than ours: when it passes, jax.distributed
        # aborts the process with a C++ fatal error and its stack.
        jax.distributed.initialize(
            cluster.coordinator_address, num_processes=cluster.num_processes,
            process_id=cluster.process_id,
            initialization_timeout=int(timeout_s) + 60)
    finally:
        joined.set()


def _not_joined(cluster: Cluster, timeout_s: float) -> str:
    return (f'error: the run\'s {cluster.num_processes} processes did not all '
            f'join within {timeout_s:g} s (this is process '
            f'{cluster.process_id}, coordinator {cluster.coordinator_address});'
            ' start every process with the same --num_processes and '
            '--coordinator_address, or raise --initialization_timeout')


def _exit_unless(joined: threading.Event, deadline: float, line: str) -> None:
    # The wait is in C++ (the GIL released), so this thread runs meanwhile;
    # nothing has been written yet, so leaving at once loses nothing.
    if not joined.wait(max(0.0, deadline - time.monotonic())):
        print(line, file=sys.stderr, flush=True)
        os._exit(2)


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0, or the only
    one)."""
    import jax
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here for the others (nothing with one process)."""
    import jax
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
