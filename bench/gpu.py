"""GPU readiness: the paper preset's SimCLR pretraining at 224 px from image files, on every GPU of the machine.

For ResNet-50 and a network of the ProxylessNAS space (width 1.0), a fixed number of steps of `ssl_arch.simclr.pretrain`
with the paper preset (LARS, batch --batch-size over all GPUs, the ImageNet stem) reading a synthetic ImageNet-layout
folder (`ssl_arch.fixtures.write_imagenet`: JPEGs of 150-500 px) through the streaming loader, with bf16 autocast,
channels_last and torch.compile each on and off. For each run it prints images/s (an image = its 2 views, all GPUs),
peak GPU memory per GPU, the share of the step time spent waiting for the loader, and whether the loss stayed finite.

Started with more than one GPU visible and not under torchrun, it restarts itself under
`torchrun --nproc_per_node=<GPUs>`. `--smoke` runs one short configuration on whatever device there is (the CPU
here), to check the script itself.

Usage: python bench/gpu.py [--steps 20] [--batch-size 512] [--workers 8] [--root /tmp/ssl_arch_gpu] [--smoke]
"""
import argparse, itertools, json, math, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import torch

from ssl_arch.distributed import get_rank, get_world_size, is_main_process
from ssl_arch.fixtures import write_imagenet
from ssl_arch.preset import get_preset
from ssl_arch.proxyless_search import sample_specs


def synthetic_folder(root: Path, images: int) -> Path:
    "An ImageNet-layout folder with at least `images` training JPEGs (written once; concurrent writers keep one copy)."
    where = root / 'imagenet'
    if not (where / 'meta.bin').exists():
        write_imagenet(where, n_classes=10, per_class_train=math.ceil(images / 10), per_class_val=1, seed=0)
    return where


def one_run(arch: str, root: Path, steps: int, batch: int, workers: int, bf16: bool, channels_last: bool,
            compile: bool, device: str) -> dict:
    "`steps` steps of paper-preset pretraining; its throughput, loader share, peak memory and finiteness."
    from ssl_arch.simclr import pretrain   # after torchrun's environment is in place
    config = get_preset('paper').pretrain_config(arch, 'imagenet', epochs=1, batch_size=batch, warmup_epochs=0,
                                                 max_images=steps * batch, knn_every=0, bf16=bf16,
                                                 channels_last=channels_last, data_root=str(root), workers=workers)
    if device == 'cuda': torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        try: m = pretrain(config, out, device=device, compile=compile, progress=False)
        except Exception as e: return dict(error=f'{type(e).__name__}: {e}'[:300])
    h = m['history'][-1]
    return dict(images_per_s=h['images_per_s'], loader_share=round(h['data_s'] / h['seconds'], 3),
                peak_gib=round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if device == 'cuda' else None,
                finite=math.isfinite(h['loss']), loss=round(h['loss'], 4))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--batch-size', type=int, default=512, help='over all GPUs (the paper: 4096 on 32 GPUs)')
    ap.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 2) // max(1, torch.cuda.device_count()) - 1))
    ap.add_argument('--root', default=str(Path(tempfile.gettempdir()) / 'ssl_arch_gpu'))
    ap.add_argument('--smoke', action='store_true', help='one short run on the available device (checks the script)')
    a = ap.parse_args()
    gpus = torch.cuda.device_count()
    if gpus > 1 and 'LOCAL_RANK' not in os.environ and not a.smoke:
        torchrun = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}', __file__, *sys.argv[1:]]
        sys.exit(subprocess.call(torchrun))
    device = 'cuda' if gpus else 'cpu'
    steps, batch = (2, 8) if a.smoke else (a.steps, a.batch_size)
    root = Path(a.root)
    synthetic_folder(root, steps * batch)
    if is_main_process():
        name = torch.cuda.get_device_name(0) if gpus else 'CPU'
        print(f"{max(gpus, 1)} x {name}, torch {torch.__version__}, batch {batch} over {get_world_size()} process(es), "
              f"{steps} steps at 224 px, {a.workers} loader workers per process", flush=True)
    arches = {'resnet50': 'resnet50', 'proxyless w1.0': sample_specs(1.0, 1, seed=0)[0].id}
    grid = [(True, True, True)] if a.smoke else list(itertools.product((True, False), repeat=3))
    for (label, arch), (bf16, cl, comp) in itertools.product(arches.items(), grid):
        if a.smoke and label != 'resnet50': continue
        r = one_run(arch, root, steps, batch, a.workers, bf16 and device == 'cuda', cl, comp and device == 'cuda', device)
        if is_main_process():
            print(json.dumps(dict(model=label, bf16=bf16, channels_last=cl, compile=comp, **r)), flush=True)


if __name__ == '__main__':
    main()
