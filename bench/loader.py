"""Streaming real image files: loader throughput at 224 px, peak memory against corpus size, and the probe from the cache.

  (1) images/s of the views ready for the model at 224 px (an image = its 2 views), same worker count:
      ours: what CPU pretraining runs (`ssl_arch.simclr.epoch_batches`: JPEG decode, two random resized crops and
      `SimCLRAugmentation(crop=False)` on each, all in the workers: `ssl_arch.streaming.AugmentedViews`) against the
      conventional pipeline: torchvision `ImageFolder` + a per-sample `transforms.v2` SimCLR transform applied twice
      in the workers (and lightly's `SimCLRTransform` the same way when lightly is importable: a bench-only
      dependency). Goal: ours >= 1.5x. Also shown: the GPU path run on the CPU (crops in the workers, the batch
      augmented in the training process), which the CPU path replaced.
  (2) peak RSS of one `pretrain` epoch (a small model at 224 px, 2 workers) over 2,000 and over 20,000 fixture
      images, each in a fresh process: the training process and the largest worker. Goal: equal within 10%.
  (3) linear evaluation from the on-disk feature cache over 20,000 images: seconds and peak RSS (fresh process).

Fixtures (the ImageNet layout, `ssl_arch.fixtures.write_imagenet`) are written once under --root.
Usage: python bench/loader.py [--root /tmp/ssl_arch_bench] [--workers 2] [--batches 16] [--rounds 3] [--skip-memory] [--memory-size 224]
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets as tvd
from torchvision.transforms import v2

from ssl_arch.augment import IMAGENET_MEAN, IMAGENET_STD, SimCLRAugmentation
from ssl_arch.fixtures import write_imagenet
from ssl_arch.data import ImageFiles
from ssl_arch.simclr import PretrainConfig, augment_views, epoch_batches
from ssl_arch.streaming import ResizedCrops, plan_loader

SIZE, BATCH = 224, 64


def fixtures(root: Path, n_train: int) -> Path:
    "An ImageNet-layout folder with `n_train` training JPEGs (10 classes, 150-500 px), written once."
    where = root / f'imagenet-{n_train}'
    if not (where / 'meta.bin').exists():
        t = time.perf_counter()
        write_imagenet(where, n_classes=10, per_class_train=n_train // 10, per_class_val=10, seed=0)
        print(f"wrote {n_train} JPEGs in {time.perf_counter() - t:.0f} s -> {where}", flush=True)
    return where


def conventional_transform() -> v2.Compose:
    "SimCLR's augmentation per sample, as torchvision users write it (the same parameters as ours at 224 px)."
    return v2.Compose([v2.RandomResizedCrop(SIZE, antialias=True), v2.RandomHorizontalFlip(),
                       v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), v2.RandomGrayscale(0.2),
                       v2.RandomApply([v2.GaussianBlur(23, (0.1, 2.0))], p=0.5),
                       v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class TwoViews:
    def __init__(self, t): self.t = t
    def __call__(self, im): return self.t(im), self.t(im)


def rate(batches, n_batches: int) -> float:
    "Images/s over `n_batches` batches after the first two (worker start-up)."
    it = iter(batches)
    for _ in range(2): next(it)
    t = time.perf_counter()
    for _ in range(n_batches): v1, v2_ = next(it); assert v1.shape[-1] == SIZE
    return n_batches * BATCH / (time.perf_counter() - t)


def image_files(folder: Path) -> ImageFiles:
    samples = tvd.ImageFolder(folder / 'train').samples   # the file list only; ssl_arch.data.read_image decodes
    return ImageFiles([p for p, _ in samples], [y for _, y in samples])


def ours(folder: Path, workers: int, n_batches: int):
    "The batches CPU pretraining trains on (epoch 0 of a run at 224 px, batch 64)."
    config = PretrainConfig('resnet18', 'imagenet', batch_size=BATCH, image_size=SIZE, workers=workers, seed=0)
    return rate(epoch_batches(image_files(folder), config, 0, torch.device('cpu'), SimCLRAugmentation(SIZE, crop=False)),
                n_batches)


def batch_augmented(folder: Path, workers: int, n_batches: int):
    "The GPU path on the CPU: the workers crop, the training process augments the batch (one thread)."
    files = image_files(folder)
    aug = SimCLRAugmentation(SIZE, crop=False)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0)).tolist()
    plan = [[(i, i) for i in order[k * BATCH:(k + 1) * BATCH]] for k in range(len(order) // BATCH)]
    def batches():
        for crops, _ in plan_loader(files, plan, ResizedCrops(SIZE), 0, workers): yield augment_views(aug, crops)
    return rate(batches(), n_batches)


def per_sample(folder: Path, workers: int, n_batches: int, transform) -> float:
    ds = tvd.ImageFolder(folder / 'train', transform=TwoViews(transform))
    loader = DataLoader(ds, BATCH, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(0),
                        drop_last=True)
    return rate(((v1, v2_) for (v1, v2_), _ in loader), n_batches)


def lightly_transform():
    try: from lightly.transforms import SimCLRTransform
    except ImportError: return None
    t = SimCLRTransform(input_size=SIZE)
    return lambda im: t(im)[0]   # one view per call; TwoViews calls it twice


CHILD = r'''
import dataclasses, json, resource, sys, tempfile, time, torch
from ssl_arch.preset import get_preset
from ssl_arch.simclr import pretrain
from ssl_arch.study import baseline_spec
mode, root, workers, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
t = time.perf_counter()
if mode == 'pretrain':
    spec = baseline_spec('resnet18', get_preset('smoke'))        # a small model: the loader is what is measured
    cfg = get_preset('paper-smoke').pretrain_config(spec.id, 'imagenet', max_images=None, knn_every=0, epochs=1,
                                                    batch_size=64, data_root=root, workers=workers, image_size=size)
    cfg = dataclasses.replace(cfg, max_images=None)   # every image of the corpus (an override of None keeps the preset's cap)
    with tempfile.TemporaryDirectory() as d: m = pretrain(cfg, d, progress=False)
    out = dict(images=m['images'], images_per_s=m['history'][-1]['images_per_s'], data_s=m['history'][-1]['data_s'])
else:
    from ssl_arch.evaluate import evaluate_backbone, random_init_backbone
    spec = baseline_spec('resnet18', get_preset('smoke'))
    net = random_init_backbone(spec, small_images=False)
    with tempfile.TemporaryDirectory() as cache:
        evaluate_backbone(net, 'imagenet', cache_dir=cache, image_size=64, root=root, workers=workers)  # fills the cache
        t = time.perf_counter()                                   # then: the probe from the on-disk cache alone
        r = evaluate_backbone(net, 'imagenet', cache_dir=cache, image_size=64, root=root)
    out = dict(n_train=r[0]['n_train'], top1=r[0]['top1'])
out.update(seconds=round(time.perf_counter() - t, 1), peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           worker_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
print(json.dumps(out))
'''


def child(mode: str, root: Path, workers: int, size: int = SIZE) -> dict:
    "Run `mode` in a fresh process (so its peak RSS is its own) and return what it printed."
    r = subprocess.run([sys.executable, '-c', CHILD, mode, str(root), str(workers), str(size)], capture_output=True, text=True,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})
    if r.returncode: sys.exit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--root', default=str(Path(tempfile.gettempdir()) / 'ssl_arch_bench'))
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--batches', type=int, default=16)
    ap.add_argument('--rounds', type=int, default=3, help='back-to-back rounds of the throughput comparison (the median ratio is reported)')
    ap.add_argument('--skip-memory', action='store_true', help='only the throughput comparison')
    ap.add_argument('--memory-size', type=int, default=SIZE,
                    help='training crop of the memory epochs (both corpus sizes alike; smaller is quicker on a CPU)')
    a = ap.parse_args()
    root = Path(a.root); root.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; {a.workers} workers; batch {BATCH}, {SIZE} px")
    small = fixtures(root, 2000)
    # Rounds of the three pipelines back to back, each ratio taken within a round: the load of a shared 2-core
    # machine drifts over minutes, and 12 batches once gave ours / conventional anywhere from 1.38 to 1.74.
    lt, rounds = lightly_transform(), []
    for _ in range(a.rounds):
        r = dict(ours=ours(small, a.workers, a.batches), conv=per_sample(small, a.workers, a.batches, conventional_transform()),
                 batch=batch_augmented(small, a.workers, a.batches))
        if lt is not None: r['lightly'] = per_sample(small, a.workers, a.batches, lt)
        rounds.append(r)
    med = lambda xs: statistics.median(xs)
    span = lambda xs: f"median of {len(xs)} rounds; {min(xs):.2f}-{max(xs):.2f}"
    vs_conv = [r['ours'] / r['conv'] for r in rounds]
    print(f"(1) streaming loader, views made in workers: {med([r['ours'] for r in rounds]):7.1f} images/s")
    print(f"    ImageFolder + per-sample transforms.v2:    {med([r['conv'] for r in rounds]):7.1f} images/s  -> "
          f"ours / conventional = {med(vs_conv):.2f} ({span(vs_conv)}; goal >= 1.5)")
    if lt is not None:
        vs_light = [r['ours'] / r['lightly'] for r in rounds]
        print(f"    ImageFolder + lightly SimCLRTransform:     {med([r['lightly'] for r in rounds]):7.1f} images/s  -> "
              f"ours / lightly = {med(vs_light):.2f} ({span(vs_light)})")
    else: print("    (lightly not importable: its pipeline was not run)")
    vs_batch = [r['ours'] / r['batch'] for r in rounds]
    print(f"    crops in workers, batch augmented here:    {med([r['batch'] for r in rounds]):7.1f} images/s  -> "
          f"ours / that = {med(vs_batch):.2f} ({span(vs_batch)})")
    if a.skip_memory: return
    large = fixtures(root, 20000)
    links = {n: root / f'root-{n}' for n in (2000, 20000)}
    for n, folder in ((2000, small), (20000, large)):      # a data root per size: <root>/imagenet -> that folder
        links[n].mkdir(exist_ok=True)
        if not (links[n] / 'imagenet').exists(): (links[n] / 'imagenet').symlink_to(folder)
    m2, m20 = (child('pretrain', links[n], a.workers, a.memory_size) for n in (2000, 20000))
    print(f"(2) at {a.memory_size} px:")
    print(f"    pretraining epoch, {m2['images']} images: peak RSS {m2['peak_rss_mib']} MiB (largest worker {m2['worker_peak_rss_mib']} MiB), "
          f"{m2['seconds']} s, {m2['images_per_s']} images/s, waiting for data {m2['data_s']} s")
    print(f"    pretraining epoch, {m20['images']} images: peak RSS {m20['peak_rss_mib']} MiB (largest worker {m20['worker_peak_rss_mib']} MiB), "
          f"{m20['seconds']} s, {m20['images_per_s']} images/s, waiting for data {m20['data_s']} s")
    print(f"    peak RSS 20k / 2k = {m20['peak_rss_mib'] / m2['peak_rss_mib']:.3f} (goal: within 10%)")
    p = child('probe', links[20000], a.workers)
    print(f"(3) linear evaluation from the feature cache, {p['n_train']} training images: {p['seconds']} s, peak RSS {p['peak_rss_mib']} MiB")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == '__main__':
    main()
