"""ProxylessNAS with the SimCLR loss: data parallelism on 2 gloo processes, the entry point on a real corpus,
reproducibility, random search, derived parameter counts, and the papermill experiment notebook.

The data-parallel test launches this very file under `torchrun --nproc_per_node 2`; each rank runs `worker()` and
writes what it sampled, stepped and searched to a JSON file that the test compares across ranks.
"""
import json, os, random, subprocess, sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ssl_arch.archs import build_backbone, param_counts, spec_from_id, spec_from_json
from ssl_arch.proxyless import OPS, ProxylessSpec, cell_layout
from ssl_arch.proxyless_search import (SAMPLINGS, ProxylessSupernet, arch_optimizer, arch_step, random_search,
                                       sample_paths, search, search_run, weight_step)
from ssl_arch.preset import get_preset

ROOT = Path(__file__).resolve().parents[1]
CORPUS = 'tiny-species-mini'


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    # One intra-op thread: these models are tiny, and on a busy 2-core machine two threads waiting on each other
    # made this module 10-25x slower. Restored afterwards.
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _images(n, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def worker(result_dir: str):
    import torch.distributed as dist
    from ssl_arch.distributed import init_distributed, get_rank
    assert init_distributed('cpu')
    rank = get_rank(); torch.set_num_threads(1)
    torch.manual_seed(0)
    net = ProxylessSupernet(0.25)
    g = torch.Generator().manual_seed(100 + rank)  # different on purpose: rank 0's sample must win everywhere
    picks = {how: [[p.active, *p.involved] for p in sample_paths(net.cells, how, g)] for how in SAMPLINGS}
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(rank))  # each rank its own data
    sgd = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    adam = arch_optimizer(net.arch_parameters(), 0.1)
    loss_of = lambda ps: net(x, ps).pow(2).mean()
    losses = []
    for _ in range(2):
        losses.append(weight_step(net.cells, loss_of, sgd, 'softmax', g)[0])
        losses.append(arch_step(net.cells, loss_of, adam, 'two', g)[0])
    cfg = get_preset('smoke').search_config(steps_per_epoch=2)
    res = search(_images(40), _images(8, 1), cfg, Path(result_dir) / 'search', small_images=False)
    out = dict(rank=rank, picks=picks, losses=losses,
               weights=[p.detach().double().sum().item() for p in net.weight_parameters()],
               alphas=[a.detach().tolist() for a in net.arch_parameters()],
               search_id=res.spec.id, search_alphas=[r['alpha'] for r in res.history], arch_steps=res.arch_steps)
    Path(result_dir, f'rank{rank}.json').write_text(json.dumps(out))
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    d = tmp_path_factory.mktemp('dp')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(Path(__file__).resolve()), 'worker', str(d)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [json.loads((d / f'rank{i}.json').read_text()) for i in range(2)], d


def test_every_rank_samples_the_same_paths(ranks):
    (r0, r1), _ = ranks
    assert r0['picks'] == r1['picks']
    assert any(p[0] != 0 for p in r0['picks']['uniform'])  # not a degenerate sample


def test_ranks_stay_identical_after_weight_and_arch_steps(ranks):
    (r0, r1), _ = ranks
    assert r0['losses'] != r1['losses']        # each rank saw its own data...
    assert r0['weights'] == r1['weights']      # ...yet the averaged steps keep the replicas identical
    assert r0['alphas'] == r1['alphas']
    assert r0['search_id'] == r1['search_id'] and r0['search_alphas'] == r1['search_alphas']
    assert r0['arch_steps'] == 2 and r0['search_alphas'][-1] != r0['search_alphas'][0]


def test_only_rank_0_writes_and_the_files_are_complete(ranks):
    (r0, _), d = ranks
    saved = json.loads((d / 'search' / 'arch.json').read_text())
    assert saved['id'] == r0['search_id'] and json.loads((d / 'search' / 'search.json').read_text())['world_size'] == 2
    assert not list((d / 'search').glob('.*'))  # no temporary files left behind


def test_search_run_on_a_corpus_writes_a_spec_that_builds(tmp_path):
    res = search_run(get_preset('smoke').search, CORPUS, tmp_path, log=None)
    saved = json.loads((tmp_path / 'arch.json').read_text())
    spec = spec_from_json(saved)
    assert spec == res.spec == spec_from_id(saved['id']) and saved['id'].startswith('proxyless-w0.25-')
    assert json.loads((tmp_path / 'search.json').read_text())['finished'] is True
    history = json.loads((tmp_path / 'alpha_history.json').read_text())
    assert [h['phase'] for h in history] == ['warmup', 'search', 'search']
    assert res.arch_steps == 2 and history[-1]['alpha'] != history[0]['alpha']
    assert build_backbone(spec, small_images=True)(torch.rand(2, 3, 32, 32)).shape == (2, 1280)


def test_same_seed_same_search_and_another_seed_differs():
    cfg = get_preset('smoke').search_config(steps_per_epoch=1)
    runs = [search(_images(16), _images(8, 1), replace(cfg, seed=s), small_images=False)
            for s in (0, 0, 1)]
    assert runs[0].history[-1]['alpha'] == runs[1].history[-1]['alpha']
    assert runs[0].history[-1]['alpha'] != runs[2].history[-1]['alpha']


def test_random_search_keeps_the_lowest_held_out_loss(tmp_path):
    rs = random_search(_images(32), _images(8, 1), get_preset('smoke').search, 2, tmp_path, small_images=False)
    assert rs.budget == 2 * 3 + 2 and [r['steps'] for r in rs.candidates] == [4, 4]  # the search's compute, shared
    assert len({r['id'] for r in rs.candidates}) == 2
    best = min(rs.candidates, key=lambda r: r['held_out_loss'])['id']
    assert rs.spec.id == best == json.loads((tmp_path / 'arch.json').read_text())['id']
    assert json.loads((tmp_path / 'random_search.json').read_text())['candidates'] == rs.candidates


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_derived_params_are_the_chosen_ops_in_the_supernet(seed):
    rng = random.Random(seed)
    width = rng.choice([0.25, 0.5, 1.0])
    net = ProxylessSupernet(width)
    ops = tuple(rng.choice(c.ops) for c in cell_layout(width))
    numel = lambda m: sum(p.numel() for p in m.parameters())
    chosen = sum(numel(c.candidates[OPS.index(op)]) for c, op in zip(net.cells, ops) if op != 'zero')
    assert param_counts(ProxylessSpec(width, ops))[0] == numel(net.stem) + chosen + numel(net.head)


def test_experiment_notebook_with_papermill(tmp_path):
    nb = ROOT / 'nbs' / 'experiments' / 'search.ipynb'
    papermill = Path(sys.executable).with_name('papermill')
    h = subprocess.run([str(papermill), '--help-notebook', str(nb)], capture_output=True, text=True, timeout=120)
    for name in ('data', 'preset', 'width', 'warmup_epochs', 'search_epochs', 'batch_size', 'weight_lr', 'arch_lr',
                 'mode', 'seed', 'out'):
        assert f'  {name}:' in h.stdout, (name, h.stdout)
    out = tmp_path / 'run'
    r = subprocess.run([str(papermill), str(nb), str(tmp_path / 'executed.ipynb'), '-k', 'python3',
                        '-p', 'data', CORPUS, '-p', 'preset', 'smoke', '-p', 'search_epochs', '1', '-p', 'out', str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    assert spec_from_json((out / 'arch.json').read_text()).width == 0.25


if __name__ == '__main__' and len(sys.argv) == 3 and sys.argv[1] == 'worker':
    worker(sys.argv[2])
