"""Do the embedded data sets carry signal? Each set's chance, its test split's standard error, and the L-BFGS probe's
top-1 over random-init architectures sampled from the tiny preset's spaces (and, with --pretrained, the same
architectures pretrained with SimCLR by the tiny preset on the study-A corpus).

What a data set must show to be worth evaluating on (the reproduction issue's goal 3):
  - away from the ceiling: no model above 95%;
  - away from chance: random init well above it, at least a tenth of the way from chance to 100%;
  - a test split whose binomial standard error is at most 1 point;
  - models that differ: the spread (best minus worst model) at least 3 standard errors.
Each line ends with the criteria the set fails (or 'ok').

Measured on a quiet 2-core AMD EPYC (AVX-512), 3 models per family with --pretrained: 20 minutes, most of it the
L-BFGS probes of the MobileNets' 1,280 features.

Usage: python bench/datasets.py [--models 4] [--sets tiny-objects tiny-digits ...] [--pretrained] [--threads 2]
       [--out FILE.csv]
Time it alone: the probes and the pretraining are CPU-bound.
"""
import argparse, csv, math, os, tempfile, time

import torch

from ssl_arch.archs import sample_archs
from ssl_arch.data import load_tensors
from ssl_arch.datasets import dataset_info, dataset_names, pretraining_corpora
from ssl_arch.evaluate import extract_features, linear_probe, random_init_backbone
from ssl_arch.preset import get_preset
from ssl_arch.simclr import load_backbone, pretrain

CEILING, MIN_LIFT, MAX_SE, MIN_SPREAD_SE = 95.0, 0.1, 1.0, 3.0


def se_points(top1: float, n: int) -> float:
    "Binomial standard error (points) of a top-1 of `top1` percent on `n` test images."
    p = min(max(top1 / 100, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / n)


def probe(net, splits) -> dict:
    "L-BFGS top-1 of `net`'s features on each set's test split, trained on its train split (the studies' protocol)."
    out = {}
    for name, (xtr, ytr, xte, yte) in splits.items():
        feats = lambda x: extract_features(net, x, 32)
        out[name] = linear_probe(feats(xtr), ytr, feats(xte), yte, 'lbfgs', num_classes=dataset_info(name).num_classes)['top1']
    return out


def verdict(row: dict) -> str:
    "The goal-3 criteria a set fails ('ok' when none)."
    bad = []
    if row['best'] > CEILING: bad.append(f'ceiling (best {row["best"]:.1f} > {CEILING:.0f})')
    if row['random_lift'] < MIN_LIFT: bad.append(f'random init near chance (lift {row["random_lift"]:.2f} < {MIN_LIFT})')
    if row['se'] > MAX_SE: bad.append(f'test SE {row["se"]:.2f} > {MAX_SE:.0f}')
    if row['spread_se'] < MIN_SPREAD_SE: bad.append(f'spread {row["spread_se"]:.1f} SE < {MIN_SPREAD_SE:.0f}')
    return '; '.join(bad) or 'ok'


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', type=int, default=4, help='architectures per family (sampled from the tiny spaces, seed 0)')
    p.add_argument('--sets', nargs='+', default=None, help='embedded sets (default: all)')
    p.add_argument('--pretrained', action='store_true', help='also pretrain each model with the tiny preset (SimCLR)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', default=None, help='write one row per set to this CSV (temporary name, then renamed)')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset('tiny')
    # the mini corpus's labelled splits are its parent corpus's: measured once, under the parent's name
    names = args.sets or [n for n in dataset_names() if n != 'tiny-species-mini']
    splits = {n: (*load_tensors(n, 'train'), *load_tensors(n, 'test')) for n in names}
    specs = sample_archs(preset.resnet, args.models, seed=0) + sample_archs(preset.mobilenet, args.models, seed=0)
    corpus = pretraining_corpora()[0]
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; {len(specs)} architectures '
          f'({args.models} per family, tiny spaces), L-BFGS probe; SimCLR: {"tiny preset on " + corpus if args.pretrained else "off"}')
    random, simclr = {}, {}
    for spec in specs:
        t0 = time.perf_counter()
        random[spec.id] = probe(random_init_backbone(spec, True, preset.pretrain.seed), splits)
        if args.pretrained:
            with tempfile.TemporaryDirectory() as d:
                pretrain(preset.pretrain_config(spec.id, corpus), d, progress=False)
                simclr[spec.id] = probe(load_backbone(d)[0], splits)
        print(f'  {spec.id:34s} {time.perf_counter() - t0:6.1f} s', flush=True)
    rows = []
    for n in names:
        info, n_test = dataset_info(n), len(splits[n][3])
        r = torch.tensor([random[s.id][n] for s in specs])
        s = torch.tensor([simclr[m.id][n] for m in specs]) if simclr else None
        allm = torch.cat([r, s]) if s is not None else r
        chance, mean = 100 / info.num_classes, float(allm.mean())
        se = se_points(mean, n_test)
        row = dict(data=n, classes=info.num_classes, n_test=n_test, chance=round(chance, 1),
                   random_mean=round(float(r.mean()), 1), random_min=round(float(r.min()), 1), random_max=round(float(r.max()), 1),
                   random_lift=round((float(r.mean()) - chance) / (100 - chance), 3),   # of the way from chance to 100%
                   simclr_mean=round(float(s.mean()), 1) if s is not None else None,
                   simclr_wins=int((s > r).sum()) if s is not None else None,
                   best=round(float(allm.max()), 1), se=round(se, 2),
                   spread_se=round(float(allm.max() - allm.min()) / se, 1))
        row['verdict'] = verdict(row)
        rows.append(row)
    print(f'\n{"data set":18s} {"K":>3s} {"test":>5s} {"chance":>6s} {"random init: mean [min, max]":>29s} '
          f'{"lift":>5s}{"  SimCLR mean (wins)" if simclr else ""} {"SE":>5s} {"spread":>7s}  verdict')
    for w in rows:
        sim = f'  {w["simclr_mean"]:10.1f} ({w["simclr_wins"]}/{len(specs)})' if simclr else ''
        print(f'{w["data"]:18s} {w["classes"]:3d} {w["n_test"]:5d} {w["chance"]:6.1f} '
              f'{w["random_mean"]:14.1f} [{w["random_min"]:5.1f}, {w["random_max"]:5.1f}] {w["random_lift"]:5.2f}'
              f'{sim} {w["se"]:5.2f} {w["spread_se"]:5.1f} SE  {w["verdict"]}')
    if args.out:
        tmp = f'{args.out}.tmp-{os.getpid()}'
        with open(tmp, 'w', newline='') as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0])); wr.writeheader(); wr.writerows(rows)
        os.replace(tmp, args.out)


if __name__ == '__main__':
    main()
