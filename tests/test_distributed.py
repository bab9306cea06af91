"""Distributed SimCLR on CPU with gloo: 2 processes with batch B/2 each == 1 process with batch B.

The test launches this very file under `torchrun --nproc_per_node 2`; each rank runs `worker()`, compares what it
computes in the process group with a single-process reference it computes itself on the whole batch, and writes
the largest differences to a JSON file that the test reads.
"""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
B, D, TOL = 8, 16, 1e-5


def _max_diff(a, b) -> float: return float((a.detach() - b.detach()).abs().max())


def _check_embeddings(rank: int, world: int) -> dict:
    "Loss and gradients of NT-Xent on fixed embeddings: each rank's slice, negatives gathered across ranks."
    from ssl_arch.simclr import NTXentLoss
    from ssl_arch.distributed import all_reduce_mean, gather_objects
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    full1, full2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ref = NTXentLoss(0.1, gather_distributed=False)(full1, full2)
    ref.backward()
    n = B // world
    l1, l2 = (z[rank * n:(rank + 1) * n].clone().requires_grad_() for z in (z1, z2))
    loss = NTXentLoss(0.1)(l1, l2)
    loss.backward()
    # DDP averages gradients over ranks: a rank's loss is the mean over its own anchors, so the gradient of the
    # global mean is the all-reduced sum (done by GatherLayer's backward) divided by the world size.
    g1, g2 = torch.cat(gather_objects(l1.grad / world)), torch.cat(gather_objects(l2.grad / world))
    return dict(loss=abs(all_reduce_mean(loss.detach()).item() - ref.item()),
                grad=max(_max_diff(g1, full1.grad), _max_diff(g2, full2.grad)), ref_loss=ref.item())


def _tiny_models():
    "Models without batch-statistics coupling: a small conv net, and a tiny ResNet + head in eval mode (BN frozen)."
    from ssl_arch.simclr import SimCLRModel, ProjectionHead
    from ssl_arch.archs import get_spec, build_backbone
    torch.manual_seed(0)
    conv = SimCLRModel(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                       nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16)))
    bb = build_backbone(get_spec('resnet18').scaled(0.125), small_images=True)
    resnet = SimCLRModel(bb, ProjectionHead(bb.feature_dim, 64, 16)).eval()
    return dict(conv=conv, resnet=resnet)


def _check_models(rank: int, world: int) -> dict:
    "One `simclr_step` (LARS) under DDP on B/world images per rank vs one process on B images: loss, grads, weights."
    import copy
    from ssl_arch.simclr import NTXentLoss, simclr_step
    from ssl_arch.training import build_optimizer
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.randn(B, 3, 16, 16, generator=g), torch.randn(B, 3, 16, 16, generator=g)
    n, out = B // world, {}
    for name, model in _tiny_models().items():
        ref = copy.deepcopy(model)
        ref_loss = simclr_step(ref, NTXentLoss(0.1, gather_distributed=False),
                               build_optimizer(ref, 'lars', lr=0.5, weight_decay=1e-4), v1, v2)
        ddp = nn.parallel.DistributedDataParallel(model)
        loss = simclr_step(ddp, NTXentLoss(0.1), build_optimizer(model, 'lars', lr=0.5, weight_decay=1e-4),
                           v1[rank * n:(rank + 1) * n], v2[rank * n:(rank + 1) * n])
        grads = max(_max_diff(p.grad, q.grad) for p, q in zip(model.parameters(), ref.parameters()))
        weights = max(_max_diff(p, q) for p, q in zip(model.parameters(), ref.parameters()))
        out[name] = dict(loss=abs(loss.item() - ref_loss.item()), grad=grads, weight=weights,
                         grad_scale=max(float(q.grad.abs().max()) for q in ref.parameters()))
    return out


def _check_gather_without_grad(rank: int, world: int) -> float:
    "The bug this module exists for: a plain all_gather (no gradient path) gives different gradients."
    import torch.distributed as dist
    import torch.nn.functional as F
    from ssl_arch.simclr import NTXentLoss
    from ssl_arch.distributed import gather_objects
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    full1 = z1.clone().requires_grad_()
    NTXentLoss(0.1, gather_distributed=False)(full1, z2).backward()
    n = B // world
    l1, l2 = z1[rank * n:(rank + 1) * n].clone().requires_grad_(), z2[rank * n:(rank + 1) * n]
    parts = [torch.empty_like(l1) for _ in range(world)]
    dist.all_gather(parts, l1.detach())
    parts[rank] = l1                      # the common naive fix: only the local slice keeps its gradient
    a1 = torch.cat(parts)
    parts2 = [torch.empty_like(l2) for _ in range(world)]
    dist.all_gather(parts2, l2)
    a2 = torch.cat(parts2)
    # the loss of the local anchors against all candidates, written out as NTXentLoss does it
    z = F.normalize(torch.cat([l1, l2]), dim=1); c = F.normalize(torch.cat([a1, a2]), dim=1)
    logits = z @ c.T / 0.1
    idx = torch.arange(n) + rank * n
    logits = logits.masked_fill(F.one_hot(torch.cat([idx, idx + B]), 2 * B).bool(), float('-inf'))
    F.cross_entropy(logits, torch.cat([idx + B, idx])).backward()
    g1 = torch.cat(gather_objects(l1.grad / world))
    return _max_diff(g1, full1.grad)


def _check_pretrain(rank: int, world: int, out: Path) -> dict:
    "The real loop under torchrun: a smoke run on 2 processes writes one checkpoint holding both ranks' RNG states."
    from ssl_arch.evaluate import knn_monitor
    from ssl_arch.preset import get_preset
    from ssl_arch.simclr import pretrain
    from ssl_arch.training import load_checkpoint
    config = get_preset('smoke').pretrain_config('resnet-basic-2222-w8-g1', 'tiny-objects', epochs=1, batch_size=16)
    m = pretrain(config, out, monitor=knn_monitor('tiny-objects'), progress=False)
    res = dict(world_size=m['config']['world_size'], epochs=m['epochs_completed'], loss=m['final_loss'])
    if rank == 0:
        ck = load_checkpoint(out / 'checkpoint.pt')
        res['rng_states'] = len(ck['rng'])
        res['rng_differ'] = not torch.equal(ck['rng'][0]['torch'], ck['rng'][1]['torch'])
    return res


def worker(result_dir: str):
    import torch.distributed as dist
    from ssl_arch.distributed import init_distributed, get_rank, get_world_size
    assert init_distributed('cpu')
    rank, world = get_rank(), get_world_size()
    torch.set_num_threads(1)
    res = dict(rank=rank, world=world, embeddings=_check_embeddings(rank, world), models=_check_models(rank, world),
               no_grad_gather=_check_gather_without_grad(rank, world),
               pretrain=_check_pretrain(rank, world, Path(result_dir) / 'run'))
    Path(result_dir, f'rank{rank}.json').write_text(json.dumps(res))
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def ddp_results(tmp_path_factory):
    d = tmp_path_factory.mktemp('ddp')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(Path(__file__).resolve()), 'worker', str(d)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [json.loads((d / f'rank{i}.json').read_text()) for i in range(2)]


def test_gathered_loss_matches_single_process(ddp_results):
    for r in ddp_results:
        assert r['world'] == 2
        assert r['embeddings']['loss'] < TOL, r
        assert r['embeddings']['grad'] < TOL, r


@pytest.mark.parametrize('model', ['conv', 'resnet'])
def test_ddp_step_matches_single_process(ddp_results, model):
    for r in ddp_results:
        m = r['models'][model]
        assert m['grad_scale'] > 1e-3, m        # the comparison is not vacuous
        assert m['loss'] < TOL and m['grad'] < TOL and m['weight'] < TOL, m


def test_gather_without_gradient_is_wrong(ddp_results):
    # the check above can fail: a gather that keeps only the local gradient path differs by far more than TOL
    assert all(r['no_grad_gather'] > 1e-3 for r in ddp_results)


def test_pretrain_under_torchrun(ddp_results):
    r0, r1 = ddp_results[0]['pretrain'], ddp_results[1]['pretrain']
    assert r0['world_size'] == r1['world_size'] == 2 and r0['epochs'] == 1
    assert r0['loss'] == r1['loss']            # the logged loss is the mean over ranks
    assert r0['rng_states'] == 2 and r0['rng_differ']  # every rank's own augmentation RNG is saved


if __name__ == '__main__' and len(sys.argv) == 3 and sys.argv[1] == 'worker':
    worker(sys.argv[2])
