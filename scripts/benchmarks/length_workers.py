r"""The two outside baselines of scripts/benchmarks/length.py, one per process.

    python -m scripts.benchmarks.length_workers trax '{"length": 1024, ...}'
    python -m scripts.benchmarks.length_workers pytorch '{"length": 1024, ...}'

`trax` trains `trax.models.ReformerLM` with trax's own `Trainer` (the model
this project's ReformerLM builds, without this project's training loop);
`pytorch` trains reformer-pytorch's `ReformerLM` with the same width, depth,
heads, hashes and bucket size. Both take their batches from this project's
copy task (tasks/, plain numpy) and mirror the benchmark's timing of
`experiments.main`: one untimed interval (it compiles; trax's Trainer
compiles again at step 2), then `intervals` timed intervals of
`interval_steps` steps each, synchronised at the end of each interval. The
last line printed is `RESULT <json>` with the seconds per step of each timed
interval. Only the chosen framework is imported, so neither pays for the
other's memory.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable

from tasks import Copy

RESULT_PREFIX = 'RESULT '


def _task(cfg: dict) -> Copy:
    return Copy(cfg['vocab_size'], cfg['length'], cfg['batch_size'],
                cfg['seed'])


def trax_step(cfg: dict) -> Callable[[int], object]:
    """One training step of raw trax: step number -> loss (maybe pending)."""
    import functools

    import jax
    from models.trax_bridge import shapes, tl, trax

    task = _task(cfg)
    d_head = cfg['d_model'] // cfg['n_heads']
    attention = functools.partial(
        tl.LSHSelfAttention, n_hashes=cfg['n_hashes'],
        chunk_len=cfg['chunk_len'], n_chunks_before=1, n_chunks_after=0,
        d_qk=d_head, d_v=d_head, attention_dropout=0.0)
    model = trax.models.ReformerLM(
        vocab_size=cfg['vocab_size'], d_model=cfg['d_model'],
        d_ff=cfg['d_ff'], d_attention_key=d_head, d_attention_value=d_head,
        n_layers=cfg['n_layers'], n_heads=cfg['n_heads'], dropout=0.0,
        max_len=cfg['length'], attention_type=attention,
        ff_chunk_size=cfg['ff_chunk_size'], mode='train')
    model_with_loss = tl.Serial(model, tl.WeightedCategoryCrossEntropy())
    rng = jax.random.PRNGKey(cfg['seed'])
    model_with_loss.init(shapes.signature(task.batch('train', 0)), rng=rng)
    optimizer = trax.optimizers.Adam()
    optimizer.tree_init(model_with_loss.weights)
    trainer = trax.optimizers.Trainer(model_with_loss, optimizer)
    schedule = trax.lr.multifactor()  # as trax's training.Loop passes one

    def step(i: int):
        loss, _ = trainer.one_step(task.batch('train', i),
                                   jax.random.fold_in(rng, i), step=i,
                                   learning_rate=schedule(i))
        return loss
    return step


def pytorch_step(cfg: dict) -> Callable[[int], object]:
    """One training step of reformer-pytorch: step number -> loss."""
    import torch
    import torch.nn.functional as F
    from reformer_pytorch import ReformerLM

    torch.manual_seed(cfg['seed'])
    task = _task(cfg)
    length = cfg['length']
    # reformer-pytorch chunks the feed-forward into a number of chunks.
    ff_chunks = (length * cfg['batch_size'] // cfg['ff_chunk_size']
                 if cfg['ff_chunk_size'] else 1)
    model = ReformerLM(
        num_tokens=cfg['vocab_size'], dim=cfg['d_model'],
        depth=cfg['n_layers'], max_seq_len=length, heads=cfg['n_heads'],
        dim_head=cfg['d_model'] // cfg['n_heads'],
        bucket_size=cfg['chunk_len'], n_hashes=cfg['n_hashes'],
        ff_chunks=ff_chunks, ff_mult=cfg['d_ff'] // cfg['d_model'],
        causal=True, fixed_position_emb=True)  # sinusoids, as trax's
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(i: int):
        inputs, targets, weights = (torch.from_numpy(a)
                                    for a in task.batch('train', i))
        # trax's language models shift their input right by one; so here.
        shifted = F.pad(inputs.long(), (1, 0))[:, :-1]
        logits = model(shifted)
        losses = F.cross_entropy(logits.transpose(1, 2), targets.long(),
                                 reduction='none')
        loss = (losses * weights).sum() / weights.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def _wait(loss) -> float:
    """Blocks until `loss` (and so its whole step) is computed."""
    return float(loss)


def time_steps(step: Callable[[int], object], interval_steps: int,
               intervals: int) -> list[float]:
    """Seconds per step of each timed interval, after one untimed one."""
    n = 0
    for _ in range(interval_steps):
        n += 1
        loss = step(n)
    _wait(loss)
    seconds = []
    for _ in range(intervals):
        start = time.perf_counter()
        for _ in range(interval_steps):
            n += 1
            loss = step(n)
        _wait(loss)
        seconds.append((time.perf_counter() - start) / interval_steps)
    return seconds


WORKERS = {'trax': trax_step, 'pytorch': pytorch_step}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in WORKERS:
        print(f'usage: {argv[0]} {{{"|".join(WORKERS)}}} <json settings>',
              file=sys.stderr)
        return 2
    cfg = json.loads(argv[2])
    step = WORKERS[argv[1]](cfg)
    seconds = time_steps(step, cfg['interval_steps'], cfg['intervals'])
    print(RESULT_PREFIX + json.dumps({'seconds_per_step': seconds}),
          flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
