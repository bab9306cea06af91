"""SimCLR augmentation beyond its notebook: both backends agreeing in distribution on large samples (seconds), the same
parameters on a GPU as on the CPU (skipped without one), and the benchmark script run as a user runs it."""
import json, subprocess, sys
from pathlib import Path

import pytest
import torch

from ssl_arch.augment import SimCLRAugmentation, IMAGENET_MEAN, IMAGENET_STD

MEAN, STD = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
BACKENDS = ('fused', 'kornia')


def images(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_backends_agree_in_distribution():
    torch.manual_seed(0)
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1500, 3, 32, 32)
    grey = torch.full((1500, 3, 32, 32), 0.5)
    stats = {}
    for backend in BACKENDS:
        crop_only = SimCLRAugmentation(32, jitter_p=0, grey_p=0, backend=backend)
        v = crop_only.view(ramp) * STD + MEAN
        width = v[:, 0].amax((1, 2)) - v[:, 0].amin((1, 2))
        colour = SimCLRAugmentation(32, crop_scale=(1, 1), crop_ratio=(1, 1), backend=backend)
        c = colour.view(grey * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)) * STD + MEAN
        stats[backend] = torch.tensor([width.mean(), c.mean(), c.std((1, 2, 3)).mean(), c.mean((2, 3)).std(0).mean()])
    assert torch.allclose(stats['fused'], stats['kornia'], atol=0.03), stats


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
def test_runs_on_the_batch_device_with_the_same_parameters():
    x = images(8)
    aug = SimCLRAugmentation(32).cuda()
    torch.manual_seed(0); gpu = aug(x.cuda())[0]
    torch.manual_seed(0); cpu = SimCLRAugmentation(32)(x)[0]
    assert gpu.device.type == 'cuda' and torch.allclose(gpu.cpu(), cpu, atol=1e-3)


def test_benchmark_script_runs(tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / 'bench' / 'augment.py'), '--images', '256', '--batch', '128',
                          '--workers', '0', '--repeats', '1', '--threads', '1', '--json'], capture_output=True, text=True, timeout=300,
                         cwd=root)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r['images'] == 256 and min(r['fused_images_per_s'], r['kornia_images_per_s'], r['torchvision_images_per_s']) > 0
    assert r['fused_vs_torchvision'] == pytest.approx(r['fused_images_per_s'] / r['torchvision_images_per_s'])
