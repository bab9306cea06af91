"""SimCLR augmentation: per-sample randomness within a batch, determinism under a seed, shapes/dtypes/normalisation,
strength and blur chosen by image size, each fused step equal to torchvision's functional op, both backends and
torchvision's sampler agreeing in distribution, the evaluation transform, and the benchmark script."""
import json, subprocess, sys
from pathlib import Path

import pytest
import torch
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms import v2 as T

from ssl_arch.augment import (SimCLRAugmentation, eval_transform, crop_boxes, jitter, shift_hue, gaussian_blur,
                              IMAGENET_MEAN, IMAGENET_STD)

MEAN, STD = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
BACKENDS = ('fused', 'kornia')


def images(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize('backend', BACKENDS)
def test_every_sample_gets_its_own_parameters(backend):
    aug = SimCLRAugmentation(32, backend=backend)
    same = images(1).expand(128, -1, -1, -1)
    v1, v2 = aug(same)
    flat = v1.flatten(1)
    assert len({tuple(r[:128].tolist()) for r in flat}) == 128          # 128 different views of one image
    assert not torch.equal(v1, v2)
    # crops differ within a batch: with colour off, a horizontal ramp shows each sample's crop width and position
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(64, 3, 32, 32)
    crop = SimCLRAugmentation(32, jitter_p=0, grey_p=0, flip_p=0, backend=backend).view(ramp)
    edges = torch.stack([crop[:, 0, 16, 0], crop[:, 0, 16, -1]], 1).round(decimals=4)
    assert len({tuple(e) for e in edges.tolist()}) > 32               # one crop per batch would give 1


@pytest.mark.parametrize('backend', BACKENDS)
def test_reproducible_under_seed(backend):
    aug, x = SimCLRAugmentation(32, backend=backend), images()
    torch.manual_seed(3); a = aug(x)
    torch.manual_seed(3); b = aug(x)
    torch.manual_seed(4); c = aug(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


@pytest.mark.parametrize('backend', BACKENDS)
def test_shapes_dtypes_and_normalisation(backend):
    x = images(8, size=40)
    v1, v2 = SimCLRAugmentation(32, backend=backend)(x)
    assert v1.shape == v2.shape == (8, 3, 32, 32) and v1.dtype == torch.float32
    torch.manual_seed(0); from_uint8 = SimCLRAugmentation(32, backend=backend)(x)[0]
    torch.manual_seed(0); from_float = SimCLRAugmentation(32, backend=backend)(x.float() / 255)[0]
    assert torch.allclose(from_uint8, from_float, atol=1e-5)
    off = SimCLRAugmentation(32, crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, jitter_p=0, grey_p=0, backend=backend)
    x = images(8)
    assert torch.allclose(off(x)[0], (x.float() / 255 - MEAN) / STD, atol=1e-4)
    with pytest.raises(ValueError, match=r'images.shape=\(3, 32, 32\) is not allowed'): off(x[0])
    with pytest.raises(ValueError, match="backend='albumentations' is not allowed"):
        SimCLRAugmentation(32, backend='albumentations')


def test_strength_and_blur_follow_image_size():
    small, large = SimCLRAugmentation(32), SimCLRAugmentation(96)
    assert (small.strength, small.blur, small.jitter_range) == (0.5, False, (0.4, 0.4, 0.4, 0.1))
    assert (large.strength, large.blur, large.jitter_range, large.kernel_size) == (1.0, True, (0.8, 0.8, 0.8, 0.2), 9)
    assert SimCLRAugmentation(32, strength=1.0, blur=True).blur
    # blur is really applied at 96 pixels: with everything else off, views are smoother than the image
    x = images(64, size=96)
    only_blur = SimCLRAugmentation(96, crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, jitter_p=0, grey_p=0, blur_p=1)
    v = only_blur(x)[0] * STD + MEAN
    assert (v.diff(dim=-1).abs().mean((1, 2, 3)) < (x.float() / 255).diff(dim=-1).abs().mean((1, 2, 3))).all()
    assert 'RandomGaussianBlur' in repr(SimCLRAugmentation(96, backend='kornia')._kornia)
    assert 'RandomGaussianBlur' not in repr(SimCLRAugmentation(32, backend='kornia')._kornia)


def test_fused_steps_equal_torchvision():
    x = torch.rand(6, 3, 16, 16)
    f = torch.tensor([0.3, 0.7, 1.0, 1.2, 1.5, 1.8])
    h = torch.tensor([-0.5, -0.2, 0.0, 0.05, 0.1, 0.45])
    one, zero, order = torch.ones(6), torch.zeros(6), torch.arange(4).expand(6, 4)
    for i in range(6):
        assert torch.allclose(jitter(x, f, one, one, zero, order)[i], TF.adjust_brightness(x[i], float(f[i])), atol=1e-5)
        assert torch.allclose(jitter(x, one, f, one, zero, order)[i], TF.adjust_contrast(x[i], float(f[i])), atol=1e-5)
        assert torch.allclose(jitter(x, one, one, f, zero, order)[i], TF.adjust_saturation(x[i], float(f[i])), atol=1e-5)
        assert torch.allclose(shift_hue(x, h)[i], TF.adjust_hue(x[i], float(h[i])), atol=1e-5)
    # order matters and is per sample: brightness then contrast differs from contrast then brightness (with clamping)
    y = torch.rand(2, 3, 8, 8)
    b, c = torch.full((2,), 1.8), torch.full((2,), 0.3)
    out = jitter(y, b, c, torch.ones(2), torch.zeros(2), torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]]))
    assert torch.allclose(out[0], TF.adjust_contrast(TF.adjust_brightness(y[0], 1.8), 0.3), atol=1e-5)
    assert torch.allclose(out[1], TF.adjust_brightness(TF.adjust_contrast(y[1], 0.3), 1.8), atol=1e-5)
    # the blur equals torchvision's gaussian_blur with the same kernel and sigma
    z = torch.rand(2, 3, 20, 20)
    ref = torch.stack([TF.gaussian_blur(z[i], [7, 7], [s, s]) for i, s in enumerate((0.8, 1.7))])
    assert torch.allclose(gaussian_blur(z, torch.tensor([0.8, 1.7]), 7), ref, atol=1e-5)


def test_crops_match_torchvision_sampler():
    torch.manual_seed(0)
    n = 4000
    ours = crop_boxes(n, 32, 32)
    area, logr = ours[:, 2] * ours[:, 3], (ours[:, 2] / ours[:, 3]).log()
    params = [T.RandomResizedCrop.get_params(torch.zeros(3, 32, 32), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    ref_area = torch.tensor([h * w / 1024 for _, _, h, w in params])
    ref_logr = torch.tensor([w / h for _, _, h, w in params]).log()
    for q in (0.1, 0.5, 0.9):
        assert abs(float(area.quantile(q)) - float(ref_area.quantile(q))) < 0.03, q
        assert abs(float(logr.quantile(q)) - float(ref_logr.quantile(q))) < 0.05, q
    assert abs(float(area.mean()) - float(ref_area.mean())) < 0.02


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


def test_eval_transform_is_deterministic():
    x = images(4)
    assert torch.equal(eval_transform(x), eval_transform(x))
    assert torch.allclose(eval_transform(x), (x.float() / 255 - MEAN) / STD, atol=1e-5)
    big = torch.zeros(2, 3, 64, 96, dtype=torch.uint8)
    big[..., :, 40:56] = 255                                             # a bright vertical band in the centre
    out = eval_transform(big, 32) * STD + MEAN
    assert out.shape == (2, 3, 32, 32) and out[..., 16].min() > 0.9 and out[..., 0].max() < 0.1


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
