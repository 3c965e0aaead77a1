"""What every benchmark command shares: checking its inputs before minutes
of work, running Python in a fresh process, naming the machine, saving the
figures as JSON."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

from experiments.errors import ConfigError


def check_inputs(json_path: str, gin_files=()) -> None:
    """Raises ConfigError for a --json in a missing directory or a gin file
    that does not build, so a typo fails before any run starts."""
    if not os.path.isdir(os.path.dirname(os.path.abspath(json_path))):
        raise ConfigError(f'--json={json_path}: no such directory')
    from experiments import config
    for gin_file in gin_files:
        config.parse([gin_file], [])
        config.build_experiment()


def run_python(args: list[str], what: str | None = None,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """`python args` in a fresh process, output captured; raises
    RuntimeError with the end of its stderr if it fails."""
    result = subprocess.run([sys.executable] + args, env=env,
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f'{what or " ".join(args)} failed (exit '
                           f'{result.returncode}):\n{result.stderr[-3000:]}')
    return result


def machine() -> str:
    import jax
    return (f'{platform.processor() or platform.machine()}, '
            f'{os.cpu_count()} CPUs, jax {jax.__version__} on '
            f'{jax.devices()[0].device_kind}')


def save_json(path: str, data: dict) -> None:
    with open(path, 'w') as f:
        json.dump({'machine': machine(), **data}, f, indent=2)
    print(f'wrote {path}')
