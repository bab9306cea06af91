"""Images/s of SimCLR augmentation at 32x32: batched (ours, fused and kornia backends) vs torchvision's per-sample
pipeline in a DataLoader with workers, on the same images, in one run.

Every pipeline makes two views per image (SimCLR), so "images/s" counts source images (views/s is twice that).
The batched pipelines run in this process, with 1 torch thread and with torch's default threads (both reported: on a
busy 2-core machine extra intra-op threads can make small ops much slower); the per-sample pipeline runs torchvision v2
transforms on PIL images (as torchvision's CIFAR10 hands them out) in `--workers` DataLoader worker processes with
persistent workers, timed on its second epoch (steady state, worker start-up excluded).

    python bench/augment.py [--images 4000] [--batch 512] [--workers 2] [--repeats 2] [--threads 1,2] [--json]
"""
import argparse, json, os, time

import numpy as np
import torch

from ssl_arch.augment import SimCLRAugmentation, IMAGENET_MEAN, IMAGENET_STD
from ssl_arch.data import load_tensors


class TwoViews(torch.utils.data.Dataset):
    "A conventional SimCLR data set: uint8 HWC arrays -> PIL -> two per-sample augmented views."
    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform
    def __len__(self): return len(self.images)
    def __getitem__(self, i):
        from PIL import Image
        im = Image.fromarray(self.images[i])
        return self.transform(im), self.transform(im)


def torchvision_pipeline(size=32, strength=0.5):
    "SimCLR's CIFAR pipeline with torchvision.transforms.v2 (no blur at 32x32)."
    import torchvision.transforms.v2 as T
    s = strength
    return T.Compose([T.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
                      T.RandomHorizontalFlip(), T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
                      T.RandomGrayscale(p=0.2), T.ToImage(), T.ToDtype(torch.float32, scale=True),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def time_batched(aug, images, batch, repeats):
    "Best images/s over `repeats` passes (after one warm-up batch)."
    aug(images[:batch])
    best = 0.
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(images), batch): v1, v2 = aug(images[i:i + batch])
        best = max(best, len(images) / (time.perf_counter() - t))
    return best


def time_per_sample(images, batch, workers, repeats):
    "Best images/s over `repeats` steady-state epochs of a DataLoader with persistent workers."
    ds = TwoViews(images.permute(0, 2, 3, 1).numpy(), torchvision_pipeline())
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=workers > 0)
    for _ in dl: pass                                                  # first epoch: worker start-up
    best = 0.
    for _ in range(repeats):
        t = time.perf_counter()
        for v1, v2 in dl: pass
        best = max(best, len(ds) / (time.perf_counter() - t))
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', type=int, default=4000)
    p.add_argument('--batch', type=int, default=512)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--threads', default='', help='torch thread counts for the batched runs, e.g. "1,2" (default: 1 and torch\'s default)')
    p.add_argument('--json', action='store_true', help='print one JSON line instead of a table')
    a = p.parse_args()
    images, _ = load_tensors('tiny-objects', 'unlabelled', max_images=a.images)
    torch.manual_seed(0)
    r = dict(images=len(images), image_size=32, batch=a.batch, workers=a.workers, torch_threads=torch.get_num_threads(),
             cpus=os.cpu_count())
    default_threads = torch.get_num_threads()
    for backend in ('fused', 'kornia'):
        for threads in sorted({int(t) for t in a.threads.split(',')} if a.threads else {1, default_threads}):
            torch.set_num_threads(threads)
            speed = time_batched(SimCLRAugmentation(32, backend=backend), images, a.batch, a.repeats)
            r[f'{backend}_{threads}_threads_images_per_s'] = speed
            r[f'{backend}_images_per_s'] = max(speed, r.get(f'{backend}_images_per_s', 0.))
    torch.set_num_threads(default_threads)
    r['load_average_1min'] = os.getloadavg()[0]
    r['torchvision_images_per_s'] = time_per_sample(images, a.batch, a.workers, a.repeats)
    r['fused_vs_torchvision'] = r['fused_images_per_s'] / r['torchvision_images_per_s']
    r['kornia_vs_torchvision'] = r['kornia_images_per_s'] / r['torchvision_images_per_s']
    if a.json: print(json.dumps(r)); return
    print(f"SimCLR augmentation, two views of {r['images']} images of 32x32, batch {a.batch}, "
          f"{r['cpus']} CPUs")
    for k, v in r.items():
        if k.endswith('threads_images_per_s'):
            backend, threads = k.split('_')[:2]
            label = f"batched, {'fused torch ops' if backend == 'fused' else 'kornia.augmentation'}, {threads} thread(s)"
            print(f"  {label:<52} {v:>9.0f} images/s")
    label = f'per-sample torchvision v2, DataLoader {a.workers} workers'
    print(f"  {label:<52} {r['torchvision_images_per_s']:>9.0f} images/s")
    print(f"  (1-minute load average during the run: {r['load_average_1min']:.1f} on {r['cpus']} CPUs)")
    print(f"  ratio fused / torchvision:  {r['fused_vs_torchvision']:.1f}x (best thread setting of each)")
    print(f"  ratio kornia / torchvision: {r['kornia_vs_torchvision']:.2f}x")


if __name__ == '__main__':
    main()
