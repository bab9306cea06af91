"""SimCLR learning curves on the embedded suite: kNN top-1 against steps and CPU-seconds, per schedule and model.

Which schedule (steps, batch, learning rate, optimiser, temperature, images) learns most per CPU-second at the
tiny preset's widths? For each model (the tiny ResNet18 and MobileNetV2, study B's baselines at 1/8 width) and each
schedule, `ssl_arch.simclr.pretrain` runs on the unlabelled corpus (all of it unless the schedule sets `max_images`)
with the kNN monitor after every epoch
(weighted 20-NN from the corpus's labelled train split to its test split, the same monitor `pretrain` uses), and the
random-init twin (same seed) gives the curve's step-0 point. At the end of each run the L-BFGS probe (the studies'
protocol) measures the trained backbone and its random-init twin on `--probe-sets`, so the margin SimCLR earns is
the studies' own measure.

A schedule is `name:key=value:...` over `PretrainConfig` fields plus `steps` (total SGD steps, rounded to whole
epochs over the images), e.g. `sgd-lr1:optimizer=sgd:lr=1.0:batch_size=64:steps=1000`.

Prints the random-init point, one line per monitored epoch and the end probes of each run; `--out FILE.csv` writes
every point and FILE-probes.csv the probes, after each run (through a temporary name, then renamed). Time it alone: the CPU-seconds are the process's, the seconds wall-clock.

Usage: python bench/learning_curve.py [--data tiny-objects] [--models resnet18 mobilenet_v2]
       [--schedules NAME:k=v:... ...] [--probe-sets tiny-objects tiny-lowres] [--seed 0] [--out curves.csv]
"""
import argparse, csv, os, tempfile, time

import torch

from ssl_arch.data import load_tensors
from ssl_arch.evaluate import extract_features, knn_monitor, linear_probe, random_init_backbone
from ssl_arch.preset import get_preset
from ssl_arch.simclr import load_backbone, pretrain
from ssl_arch.study import baseline_spec

DEFAULT_SCHEDULES = [
    'tiny:max_images=2048:steps=96',       # the tiny preset as it is: SGD, lr 1.0 per 256 images, batch 64, 2,048 images
    'sgd-lr1:steps=600',
    'sgd-lr2:lr=2.0:steps=600',
    'sgd-lr0.5:lr=0.5:steps=600',
    'lars-lr1.2:optimizer=lars:lr=1.2:steps=600',   # SimCLR's square-root rule at batch 64: 0.075 x sqrt(64) = 0.6
    'sgd-t0.2:temperature=0.2:steps=600',
]


def parse_schedule(text: str) -> tuple[str, dict, int]:
    "`name:key=value:...` -> (name, PretrainConfig overrides, total steps)."
    name, *items = text.split(':')
    kv = dict(item.split('=', 1) for item in items)
    steps = int(kv.pop('steps', 96))
    cast = {'lr': float, 'max_images': int, 'batch_size': int, 'weight_decay': float, 'temperature': float, 'hidden_dim': int,
            'warmup_epochs': int, 'optimizer': str, 'out_dim': int}
    bad = set(kv) - set(cast)
    if bad: raise SystemExit(f"--schedules {text!r}: unknown key(s) {sorted(bad)}; allowed: steps, {', '.join(cast)}")
    return name, {k: cast[k](v) for k, v in kv.items()}, steps


def probe_margins(spec, trained, seed: int, sets: list[str]) -> list[dict]:
    "L-BFGS top-1 of the trained backbone and its random-init twin on each set."
    rows, random_bb = [], random_init_backbone(spec, True, seed)
    for data in sets:
        (xtr, ytr), (xte, yte) = load_tensors(data, 'train'), load_tensors(data, 'test')
        top1 = {init: linear_probe(extract_features(bb, xtr, 32), ytr, extract_features(bb, xte, 32), yte,
                                   protocol='lbfgs', seed=seed)['top1']
                for init, bb in (('simclr', trained), ('random', random_bb))}
        rows.append(dict(data=data, simclr=round(top1['simclr'], 1), random=round(top1['random'], 1)))
    return rows


def run(model: str, schedule: str, data: str, seed: int, probe_sets: list[str]) -> tuple[list[dict], list[dict]]:
    name, overrides, steps = parse_schedule(schedule)
    preset = get_preset('tiny')
    spec = baseline_spec(model, preset)
    n = min(len(load_tensors(data, 'unlabelled')[0]), overrides.pop('max_images', 10 ** 9))
    base = preset.pretrain_config(spec.id, data, seed=seed, knn_every=1, max_images=n, **overrides)
    per_epoch = n // base.batch_size
    epochs = max(1, round(steps / per_epoch))
    config = preset.pretrain_config(spec.id, data, seed=seed, knn_every=1, max_images=n, epochs=epochs,
                                    warmup_epochs=min(base.warmup_epochs, epochs - 1), **overrides)
    monitor = knn_monitor(data)
    points = [dict(model=model, schedule=name, step=0, epoch=0, seconds=0.0, cpu_seconds=0.0, loss=None,
                   knn_top1=round(monitor(random_init_backbone(spec, True, seed)), 1))]
    print(f"{model:13s} {name:14s} step     0  random init            kNN {points[0]['knn_top1']:5.1f}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        t, c = time.perf_counter(), time.process_time()
        m = pretrain(config, d, monitor=monitor, progress=False)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        trained = load_backbone(d)[0]
    train_s = sum(h['seconds'] for h in m['history'])
    for h in m['history']:   # monitor time excluded: seconds and CPU-seconds of training, pro rata
        done = sum(g['seconds'] for g in m['history'] if g['epoch'] <= h['epoch'])
        points.append(dict(model=model, schedule=name, step=h['step'], epoch=h['epoch'], seconds=round(done, 1),
                           cpu_seconds=round(cpu * done / wall, 1), loss=round(h['loss'], 3),
                           knn_top1=round(h['knn_top1'], 1)))
        print(f"{model:13s} {name:14s} step {h['step']:5d}  {done:6.1f} s  loss {h['loss']:.3f}  "
              f"kNN {h['knn_top1']:5.1f}", flush=True)
    probes = [dict(model=model, schedule=name, steps=epochs * per_epoch, batch_size=config.batch_size,
                   train_seconds=round(train_s, 1), **r) for r in probe_margins(spec, trained, seed, probe_sets)]
    return points, probes


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default='tiny-objects', help='the corpus pretrained on (its labelled split is monitored)')
    p.add_argument('--models', nargs='+', default=['resnet18', 'mobilenet_v2'])
    p.add_argument('--schedules', nargs='+', default=DEFAULT_SCHEDULES)
    p.add_argument('--probe-sets', nargs='+', default=None, help='default: the corpus, tiny-lowres and tiny-textures')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None, help='CSV of every curve point (and FILE-probes.csv of the end probes)')
    a = p.parse_args()
    for s in a.schedules: parse_schedule(s)   # every bad schedule refused before any compute
    sets = a.probe_sets or [a.data, 'tiny-lowres', 'tiny-textures']
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, corpus {a.data}, seed {a.seed}")
    points, probes = [], []
    for s in a.schedules:
        for model in a.models:
            pts, prb = run(model, s, a.data, a.seed, sets)
            points += pts; probes += prb
            for r in prb:
                print(f"{model:13s} {r['schedule']:14s} {r['steps']:5d} steps {r['train_seconds']:6.1f} s  {r['data']:14s} "
                      f"L-BFGS SimCLR {r['simclr']:5.1f}  random {r['random']:5.1f}  margin {r['simclr'] - r['random']:+5.1f}",
                      flush=True)
            if a.out:   # after every run, so a long sweep stopped early keeps what it measured
                write_csv(points, a.out); write_csv(probes, a.out.replace('.csv', '-probes.csv'))


def write_csv(rows: list[dict], path: str):
    "`rows` to `path` through a temporary name."
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    os.replace(tmp, path)


if __name__ == '__main__':
    main()
