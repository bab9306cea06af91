"""Training throughput of every model the `tiny` preset samples, at 32x32 on this machine's CPU cores.

One fwd+bwd+SGD step on ready-made tensors (channels_last), batch `--batch-size`, after `--warmup` untimed steps;
prints images/s per model and the range per family. Run: `.venv/bin/python bench/archs.py`.
"""
import argparse, time

import torch
import torch.nn.functional as F

from ssl_arch.archs import build_model, param_counts, sample_archs
from ssl_arch.preset import get_preset


def images_per_second(spec, batch_size: int, steps: int, warmup: int) -> float:
    model = build_model(spec, num_classes=10, small_images=True).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))
    for i in range(warmup + steps):
        if i == warmup: t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return batch_size * steps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--preset', default='tiny', help='paper, tiny, smoke or a preset file')
    ap.add_argument('--batch-size', type=int, default=256)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, 32x32, channels_last")
    for family in ('resnet', 'mobilenet'):
        rates = []
        for spec in sample_archs(get_preset(args.preset).space(family)):
            r = images_per_second(spec, args.batch_size, args.steps, args.warmup)
            rates.append(r)
            print(f"  {spec.id:<36} {param_counts(spec)[0] / 1e6:6.2f}M params  {r:8.0f} images/s")
        rates.sort()
        print(f"{family}: {len(rates)} models, {rates[0]:.0f} - {rates[-1]:.0f} images/s (median {rates[len(rates) // 2]:.0f})")


if __name__ == '__main__':
    main()
