"""Cost of a ProxylessNAS search step against a plain SimCLR step of the sampled sub-network, and against a
DARTS-style mixed op that computes every candidate (the cost ProxylessNAS avoids).

    OMP_NUM_THREADS=1 .venv/bin/python bench/search.py [--width 0.25] [--batch 32] [--repeats 5] [--device cpu]

(One intra-op thread on a shared CPU machine: with two threads and other jobs running, the threads wait on each other
and every figure is several times slower and noisier.)

Prints, per kind of step: median wall time and process CPU time (the robust figure on a shared CPU machine) over
`repeats` rounds (the kinds in turn in each round, after warm-up steps on the same paths, so that oneDNN/cuDNN kernel
creation is not timed), and memory:
- on CPU, the bytes autograd keeps for the backward pass (activations), summed over the distinct storages seen by
  `torch.autograd.graph.saved_tensors_hooks` during the step's forward: the memory that grows with the batch;
- on CUDA, also `torch.cuda.max_memory_allocated` over the step, minus what was allocated before it.
Goals (SPEC.md section 5): a search weight step and an architecture step cost at most 1.5x the plain step.
"""
import argparse, statistics, time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ssl_arch.archs import build_backbone
from ssl_arch.proxyless_search import (ProxylessSupernet, SearchConfig, _weight_optimizer, arch_optimizer, arch_step,
                                       sample_paths, weight_step)
from ssl_arch.simclr import NTXentLoss, ProjectionHead, SimCLRModel, simclr_step


class SavedBytes:
    "Bytes of the distinct storages autograd saves for backward inside the context (its activation memory)."
    def __init__(self): self.storages = {}

    def pack(self, t):
        s = t.untyped_storage(); self.storages[s.data_ptr()] = s.nbytes(); return t

    @contextmanager
    def __call__(self):
        with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t): yield

    @property
    def mib(self) -> float: return sum(self.storages.values()) / 2**20


def _timed(step, device) -> tuple[float, float, float | None]:
    s = SavedBytes()
    if device.type == 'cuda':
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    t, cpu = time.perf_counter(), time.process_time(); step(s)
    peak = None
    if device.type == 'cuda': torch.cuda.synchronize(); peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return time.perf_counter() - t, time.process_time() - cpu, s.mib, peak


def measure(steps: dict, device, repeats: int, warmup: int = 1) -> dict:
    "Median seconds, saved-activation MiB (and CUDA peak MiB) of each step, the kinds taken in turn in every round."
    for _ in range(warmup):
        for step in steps.values(): step(SavedBytes())
    runs = {name: [] for name in steps}
    for _ in range(repeats):  # round-robin, so that a change in the machine's load hits every kind alike
        for name, step in steps.items(): runs[name].append(_timed(step, device))
    return {name: dict(seconds=statistics.median(r[0] for r in rs), cpu_seconds=statistics.median(r[1] for r in rs),
                       saved_mib=rs[-1][2], cuda_peak_mib=rs[-1][3]) for name, rs in runs.items()}


def darts_forward(net, x):
    "A DARTS mixed op in every cell: the softmax(alpha)-weighted sum of every candidate's output."
    x = net.stem(x)
    for c in net.cells:
        p = F.softmax(c.alpha, 0)
        y = sum(p[j] * op(x) for j, op in enumerate(c.candidates))  # the zero op adds nothing
        x = x + y if c.shortcut else y
    return torch.flatten(net.pool(net.head(x)), 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--width', type=float, default=0.25); ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--image-size', type=int, default=32); ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu'); ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args(argv)
    dev, small = torch.device(a.device), a.image_size <= 64
    torch.manual_seed(a.seed)
    net = ProxylessSupernet(a.width, small).to(dev); head = ProjectionHead(net.feature_dim).to(dev)
    loss_fn = NTXentLoss(0.1)
    v1, v2 = (torch.randn(a.batch, 3, a.image_size, a.image_size, device=dev) for _ in range(2))
    cfg = SearchConfig(width=a.width, batch_size=a.batch, weight_lr=0.05, arch_lr=0.01)
    sgd = _weight_optimizer(net.weight_parameters() + list(head.parameters()), cfg)
    adam = arch_optimizer(net.arch_parameters(), cfg.arch_lr)
    for al in net.arch_parameters(): al.data.normal_(0, 0.5)  # a mid-search state: paths of every kind
    gen = torch.Generator().manual_seed(a.seed)
    state = gen.get_state()
    paths = sample_paths(net.cells, 'softmax', gen)  # the sub-network every weight step below runs

    def loss_of(saved):
        def f(ps):
            with saved(): z1, z2 = head(net(torch.cat([v1, v2]), ps)).chunk(2); return loss_fn(z1, z2)
        return f

    def search_weight(saved): gen.set_state(state); weight_step(net.cells, loss_of(saved), sgd, 'softmax', gen)
    def search_arch(mode):
        def f(saved): gen.set_state(state); arch_step(net.cells, loss_of(saved), adam, mode, gen)
        return f

    spec = net.spec_of(paths)
    model = SimCLRModel(build_backbone(spec, small), ProjectionHead(net.feature_dim)).to(dev)
    plain_opt = _weight_optimizer(list(model.parameters()), cfg)
    def plain(saved):
        with saved(): simclr_step(model, loss_fn, plain_opt, v1, v2)

    darts_opt = torch.optim.SGD(list(net.parameters()) + list(head.parameters()), lr=0.01)
    def darts(saved):
        darts_opt.zero_grad(set_to_none=True)
        with saved(): z1, z2 = head(darts_forward(net, torch.cat([v1, v2]))).chunk(2); loss = loss_fn(z1, z2)
        loss.backward(); darts_opt.step()

    print(f"device {dev}, threads {torch.get_num_threads()}, width {a.width}, batch {a.batch} (x2 views), "
          f"{a.image_size}x{a.image_size}, sub-network {spec.id}")
    rows = [('(b) plain SimCLR step, sub-network built standalone', plain),
            ('(a) search weight step (one sampled path)', search_weight),
            ("(a) search arch step, 'two' mode", search_arch('two')),
            ("    search arch step, 'full_v2' mode", search_arch('full_v2')),
            ('(c) DARTS-style mixed op (every candidate)', darts)]
    res = measure(dict(rows), dev, a.repeats)
    base = res[rows[0][0]]
    print(f"{'step':<54}{'wall ms':>9}{'x (b)':>7}{'CPU ms':>9}{'x (b)':>7}{'saved MiB':>11}{'x (b)':>7}"
          + ('  cuda peak MiB' if dev.type == 'cuda' else ''))
    for name, r in res.items():
        line = (f"{name:<54}{1e3 * r['seconds']:>9.1f}{r['seconds'] / base['seconds']:>7.2f}"
                f"{1e3 * r['cpu_seconds']:>9.1f}{r['cpu_seconds'] / base['cpu_seconds']:>7.2f}"
                f"{r['saved_mib']:>11.1f}{r['saved_mib'] / base['saved_mib']:>7.2f}")
        if r['cuda_peak_mib'] is not None: line += f"{r['cuda_peak_mib']:>10.1f} ({r['cuda_peak_mib'] / base['cuda_peak_mib']:.2f}x)"
        print(line)
    return res


if __name__ == '__main__':
    main()
