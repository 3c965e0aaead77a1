"""What every benchmark command shares: checking its inputs before minutes
of work, naming the machine, saving the figures as JSON."""
from __future__ import annotations

import json
import os
import platform

from experiments.config import ConfigError


def check_inputs(json_path: str, gin_files=()) -> None:
    """Raises ConfigError for a --json in a missing directory or a gin file
    that does not build, so a typo fails before any run starts."""
    if not os.path.isdir(os.path.dirname(os.path.abspath(json_path))):
        raise ConfigError(f'--json={json_path}: no such directory')
    from experiments import config
    for gin_file in gin_files:
        config.parse([gin_file], [])
        config.build_experiment()


def machine() -> str:
    import jax
    return (f'{platform.processor() or platform.machine()}, '
            f'{os.cpu_count()} CPUs, jax {jax.__version__} on '
            f'{jax.devices()[0].device_kind}')


def save_json(path: str, data: dict) -> None:
    with open(path, 'w') as f:
        json.dump({'machine': machine(), **data}, f, indent=2)
    print(f'wrote {path}')
