# Copyright (c) mmstop contributors. All rights reserved.
"""Gathered InfoNCE under 2-process gloo DDP vs one process.

Two CPU processes (``torch.multiprocessing`` fork, gloo, ``file://``
rendezvous)
each hold half of a global batch of 4 video-caption pairs and train the tiny
STOP retrieval model wrapped in ``DistributedDataParallel`` with SGD. One
process in the test itself trains the same model on the whole batch.

* The loss is the same on both ranks and equals the single-process loss of
  the global batch, at every step.
* ``gather_grad='exact'``: DDP's gradient equals the single-process gradient,
  and the SGD trajectories (losses, parameters) coincide.
* ``gather_grad='local'`` (official): DDP's gradient is 1/world_size of the
  single-process gradient, so DDP with lr equals one process with
  lr / world_size.
* ``gather_features`` itself: rank-order layout with unequal local sizes,
  the local rows of ``'local'`` keep exactly their own gradient, and
  ``'exact'`` sums the gradients of every rank's loss.

The model is deterministic: intra-prompt dropout 0 (official 0.5) and the
inter-frame weights normalised per video (``normalize='video'``; the official
``'batch'`` would make the features of a 2-video half differ from those of
the 4-video batch, independently of the gather).
"""
import os.path as osp
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import TINY_FRAMES, TINY_IMAGE, tiny_stop_similarity

WORLD = 2
GLOBAL_BATCH = 4
STEPS = 3
LR = 0.05
NUM_FRAMES, IMAGE, CONTEXT = TINY_FRAMES, TINY_IMAGE, 16
TIMEOUT = 300  # seconds for the spawned processes


def build_model(gather_grad):
    return tiny_stop_similarity(
        intra_prompt=dict(dropout=0.),
        inter_prompt=dict(normalize='video'),
        gather_grad=gather_grad)


def global_batch():
    from mmaction.structures import ActionDataSample
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(
        GLOBAL_BATCH, NUM_FRAMES, 3, IMAGE, IMAGE, generator=g)
    samples = []
    for i in range(GLOBAL_BATCH):
        ids = torch.zeros(1, CONTEXT, dtype=torch.long)
        k = 3 + i
        ids[0, 0] = 49406
        ids[0, 1:1 + k] = torch.randint(1, 49000, (k, ), generator=g)
        ids[0, 1 + k] = 49407
        ds = ActionDataSample()
        ds.set_field(ids, 'text_ids', dtype=torch.Tensor)
        samples.append(ds)
    return frames, samples


def train(model, frames, samples, lr, steps=STEPS):
    """SGD steps; losses, the first step's gradients, final parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    module = getattr(model, 'module', model)
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    losses, first_grads = [], None
    for _ in range(steps):
        opt.zero_grad()
        loss = model(frames, samples, mode='loss')['loss_sim']
        loss.backward()
        if first_grads is None:
            first_grads = {
                n: (torch.zeros_like(p) if p.grad is None else p.grad.clone())
                for n, p in zip(names, params)
            }
        losses.append(loss.item())
        opt.step()
    final = {n: p.detach().clone() for n, p in zip(names, params)}
    return dict(losses=losses, grads=first_grads, params=final)


def gather_checks(rank):
    """gather_features with unequal sizes (rank r holds r + 2 rows)."""
    from mmstop.models.similarity import gather_features
    sizes = [r + 2 for r in range(WORLD)]
    weight = torch.arange(sum(sizes) * 3, dtype=torch.float).reshape(-1, 3)
    out = {}
    for grad in ('local', 'exact'):
        x = (torch.arange(sizes[rank] * 3, dtype=torch.float).reshape(-1, 3) +
             100 * rank).requires_grad_()
        y = torch.full((sizes[rank], 1), float(rank))
        gx, gy = gather_features(x, y, grad=grad)
        # a different loss on every rank: rank r weighs by r + 1
        ((gx * weight).sum() * (rank + 1)).backward()
        out[grad] = dict(
            gathered=gx.detach(), owner=gy.flatten(), grad=x.grad.clone())
    return out


def worker(rank, init_file, out_dir):
    from torch.nn.parallel import DistributedDataParallel as DDP
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=WORLD)
    try:
        results = dict(gather=gather_checks(rank))
        frames, samples = global_batch()
        b = GLOBAL_BATCH // WORLD
        local = slice(rank * b, (rank + 1) * b)
        for mode in ('local', 'exact'):
            model = DDP(build_model(mode), find_unused_parameters=True)
            model.train()
            results[mode] = train(model, frames[local], samples[local], LR)
        torch.save(results, osp.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def ddp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ddp')
    init_file = str(tmp / 'rendezvous')
    # fork after importing the stack once here: spawned workers would each
    # import torch + mmaction again (~9 s each on the shared 2-core machine);
    # the workers run with one intra-op thread (no OpenMP pool after fork)
    build_model('local')
    global_batch()
    ctx = mp.start_processes(
        worker,
        args=(init_file, str(tmp)),
        nprocs=WORLD,
        join=False,
        start_method='fork')
    deadline = time.time() + TIMEOUT
    try:
        while not ctx.join(timeout=1):
            if time.time() > deadline:
                pytest.fail(f'DDP workers did not finish in {TIMEOUT} s')
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return [
        torch.load(osp.join(tmp, f'rank{r}.pt'), weights_only=False)
        for r in range(WORLD)
    ]


@pytest.fixture(scope='module')
def single_process():
    """One process, the whole batch: SGD at lr (exact) and lr / WORLD."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames, samples = global_batch()
        out = {}
        for lr in (LR, LR / WORLD):
            model = build_model('local')  # no process group: plain loss
            model.train()
            out[lr] = train(model, frames, samples, lr)
    finally:
        torch.set_num_threads(n)
    return out


def assert_tensors_close(got, want, scale=1.0):
    assert got.keys() == want.keys()
    for name in want:
        # float32 round-off of a 2-video vs a 4-video forward, relative to
        # the size of the tensor
        w = want[name] * scale
        atol = 1e-4 * float(w.abs().max()) + 1e-7
        torch.testing.assert_close(
            got[name], w, rtol=1e-4, atol=atol, msg=lambda m: f'{name}: {m}')


def test_gather_layout_and_gradient_rules(ddp_results):
    sizes = [r + 2 for r in range(WORLD)]
    offsets = [sum(sizes[:r]) for r in range(WORLD)]
    weight = torch.arange(sum(sizes) * 3, dtype=torch.float).reshape(-1, 3)
    for grad in ('local', 'exact'):
        want = torch.cat([
            torch.arange(n * 3, dtype=torch.float).reshape(-1, 3) + 100 * r
            for r, n in enumerate(sizes)
        ])
        owners = torch.cat(
            [torch.full((n, ), float(r)) for r, n in enumerate(sizes)])
        for rank, res in enumerate(ddp_results):
            got = res['gather'][grad]
            # every rank builds the same global layout, in rank order
            torch.testing.assert_close(got['gathered'], want)
            torch.testing.assert_close(got['owner'], owners)
            rows = weight[offsets[rank]:offsets[rank] + sizes[rank]]
            if grad == 'local':
                # only this rank's own loss reaches its rows
                expected = rows * (rank + 1)
            else:
                # the sum over the ranks' losses (weights 1 + 2)
                expected = rows * sum(r + 1 for r in range(WORLD))
            torch.testing.assert_close(got['grad'], expected)


def test_ddp_loss_equals_single_process_loss(ddp_results, single_process):
    reference = single_process[LR]
    for mode in ('local', 'exact'):
        first = [res[mode]['losses'][0] for res in ddp_results]
        # all ranks compute the loss of the same global batch
        assert first[0] == pytest.approx(first[1], rel=1e-6)
        assert first[0] == pytest.approx(reference['losses'][0], rel=1e-5)


def test_exact_gather_gives_single_process_gradient(ddp_results,
                                                    single_process):
    reference = single_process[LR]
    # the single-process loss has gradients to check against
    assert any(g.abs().sum() > 0 for g in reference['grads'].values())
    for res in ddp_results:
        assert_tensors_close(res['exact']['grads'], reference['grads'])
        assert res['exact']['losses'] == pytest.approx(
            reference['losses'], rel=1e-5)
        assert_tensors_close(res['exact']['params'], reference['params'])
    # and training changed the loss (the trajectories are not trivial)
    assert reference['losses'][-1] != pytest.approx(
        reference['losses'][0], rel=1e-4)


def test_local_gather_gives_gradient_over_world_size(ddp_results,
                                                     single_process):
    reference = single_process[LR]
    half_lr = single_process[LR / WORLD]
    for res in ddp_results:
        assert_tensors_close(
            res['local']['grads'], reference['grads'], scale=1 / WORLD)
        # DDP at lr follows one process at lr / world_size
        assert res['local']['losses'] == pytest.approx(
            half_lr['losses'], rel=1e-5)
        assert_tensors_close(res['local']['params'], half_lr['params'])
    assert half_lr['losses'][1] != pytest.approx(
        reference['losses'][1], rel=1e-5)
