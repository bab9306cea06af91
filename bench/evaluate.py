"""Benchmark of linear evaluation: one tiny backbone on every embedded data set, from raw images and from the cache.

Goals (issue 5, on 2 CPU cores): at most 30 s from raw images, at most 5 s from the feature cache.
Run: `.venv/bin/python bench/evaluate.py [--threads 2] [--protocol lbfgs] [--width 16]`.
The suite is built (or verified) before the clock starts: building it is the suite module's cost, not evaluation's.
"""
import argparse, os, tempfile, time

import torch

from ssl_arch import data as ssl_data, datasets, suite
from ssl_arch.archs import ResNetSpec
from ssl_arch.evaluate import PROTOCOLS, evaluate_backbone, random_init_backbone


def timed_evaluation(net, names, protocol, cache_dir):
    "Records of `evaluate_backbone`, the wall time and the CPU time (all threads) it took."
    t0, c0 = time.perf_counter(), time.process_time()
    records = evaluate_backbone(net, names, protocol=protocol, cache_dir=cache_dir)
    return records, time.perf_counter() - t0, time.process_time() - c0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads (the goal is stated for 2 cores)')
    p.add_argument('--protocol', default='lbfgs', choices=PROTOCOLS)
    p.add_argument('--width', type=int, default=16, help='ResNet-18-like backbone (CIFAR stem) of this base width')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = datasets.dataset_names()
    suite.ensure_suite()
    net = random_init_backbone(ResNetSpec('basic', (2, 2, 2, 2), width=args.width), small_images=True, seed=0)
    n_images = sum(len(ssl_data.load_tensors(n, s)[0]) for n in names for s in ('train', 'test'))
    ssl_data._embedded_arrays.cache_clear()  # the raw run reads the files itself
    with tempfile.TemporaryDirectory() as cache_dir:
        raw, t_raw, cpu_raw = timed_evaluation(net, names, args.protocol, cache_dir)
        cached, t_cached, cpu_cached = timed_evaluation(net, names, args.protocol, cache_dir)
    assert [r['top1'] for r in raw] == [r['top1'] for r in cached], 'the cache changed a result'
    print(f"backbone {net.spec.id} (random init, {net.feature_dim}-d features), protocol {args.protocol}, "
          f"{torch.get_num_threads()} threads, {len(names)} data sets, {n_images} images")
    print(f"{'data set':<20}{'top-1':>8}{'features s':>12}{'probe s':>10}{'cached features s':>19}{'cached probe s':>16}")
    for r, c in zip(raw, cached):
        print(f"{r['eval_data']:<20}{r['top1']:>8.1f}{r['features_s']:>12.2f}{r['probe_s']:>10.2f}"
              f"{c['features_s']:>19.3f}{c['probe_s']:>16.2f}")
    # On a shared machine the wall time includes waiting for the cores; the CPU time is what the work itself took.
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"from raw images: {t_raw:6.1f} s wall, {cpu_raw:6.1f} s CPU (goal <= 30 s)")
    print(f"from the cache:  {t_cached:6.1f} s wall, {cpu_cached:6.1f} s CPU (goal <= 5 s)")


if __name__ == '__main__':
    main()
