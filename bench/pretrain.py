"""Throughput of SimCLR pretraining at 32x32, and (with --learn) evidence that the tiny preset learns.

For the tiny preset's ResNet18 and MobileNetV2 (the widths study B's baselines use, x 1/8), images per second
(an image = its 2 views):
  (a) ceiling: the model's bare forward + backward + optimiser step on ready-made tensors (SimCLR loss included);
  (b) full loop: `ssl_arch.simclr.pretrain` itself (batch augmentation on the device, loss, step, logging);
  (c) conventional: per-sample torchvision transforms in DataLoader workers, same model, loss and optimiser, as such a
      pipeline is usually written (float32, NCHW: none of the loop's per-family speed choices);
  (c') the same with the loop's channels_last / bf16 choices, which isolates what the batched augmentation alone gains;
  (d) lightly, when importable (a bench-only dependency, e.g. `pip install --target DIR --no-deps lightly==1.6.0
      lightning-utilities` and PYTHONPATH=DIR): its own SimCLR pipeline as its tutorial writes it -- PIL images,
      `lightly.transforms.SimCLRTransform` per sample in the DataLoader workers, one forward per view, its `NTXentLoss`;
      same model, optimiser and batch. The real peer: (b)/(d) is the speed-up a lightly user would see.
Goals on 2 CPU cores (the real-data issue's): (b) >= 0.9 x (a) for both families, (b) >= 2 x (c) for the ResNet-like
one. When the model and the workers share the same cores and both are CPU-bound, (b)/(c') cannot exceed about
(model + per-sample transforms) / (model + batched augmentation) per image, so the script also prints the
augmentations' CPU cost per image.

--learn pretrains both models with the `tiny` preset on a corpus and compares kNN and linear-probe top-1 on the
corpus's labelled split with their random-init twins (same seed).

Usage: python bench/pretrain.py [--steps 24] [--repeats 2] [--batch-size 64] [--workers 2] [--learn] [--data tiny-objects]
"""
import argparse, json, tempfile, time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ssl_arch.archs import build_backbone
from ssl_arch.augment import IMAGENET_MEAN, IMAGENET_STD
from ssl_arch.data import load_tensors
from ssl_arch.preset import get_preset
from ssl_arch.simclr import NTXentLoss, ProjectionHead, SimCLRModel, load_backbone, pretrain, simclr_step
from ssl_arch.training import build_optimizer, scaled_lr, speed_choices
from ssl_arch.study import baseline_spec

MODELS = {'tiny ResNet-like': baseline_spec('resnet18', get_preset('tiny')),
          'tiny MobileNet-like': baseline_spec('mobilenet_v2', get_preset('tiny'))}


def _model_and_optimiser(spec, config):
    torch.manual_seed(0)
    backbone = build_backbone(spec, small_images=True)
    model = SimCLRModel(backbone, ProjectionHead(backbone.feature_dim, config.hidden_dim, config.out_dim))
    if config.channels_last: model = model.to(memory_format=torch.channels_last)
    return model, build_optimizer(model, config.optimizer, scaled_lr(config.lr, config.batch_size), config.weight_decay)


def ceiling(spec, config, steps: int, repeats: int) -> float:
    "(a) images/s of forward + backward + step on ready-made views (best of `repeats` timed blocks)."
    model, opt = _model_and_optimiser(spec, config)
    loss_fn, b = NTXentLoss(config.temperature), config.batch_size
    v1, v2_ = torch.randn(b, 3, 32, 32), torch.randn(b, 3, 32, 32)
    for _ in range(2): simclr_step(model, loss_fn, opt, v1, v2_, config.channels_last, config.bf16)
    best = 0.
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps): simclr_step(model, loss_fn, opt, v1, v2_, config.channels_last, config.bf16).item()
        best = max(best, steps * b / (time.perf_counter() - t))
    return best


def full_loop(spec, config, steps: int, repeats: int) -> float:
    "(b) images/s of `pretrain`: best epoch after the first (which pays for kernel selection and warm-up)."
    with tempfile.TemporaryDirectory() as d:
        c = get_preset('tiny').pretrain_config(spec.id, config.data, batch_size=config.batch_size, epochs=1 + repeats,
                            warmup_epochs=1, max_images=steps * config.batch_size, knn_every=0)
        m = pretrain(c, d, progress=False)
    return max(h['images_per_s'] for h in m['history'][1:])


class TwoViews(Dataset):
    "The conventional SimCLR data set: each item is two independently transformed views of one image."
    def __init__(self, images):
        self.images = images
        self.transform = v2.Compose([
            v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    def __len__(self): return len(self.images)
    def __getitem__(self, i): return self.transform(self.images[i]), self.transform(self.images[i])


def conventional(spec, config, steps: int, repeats: int, images, workers: int) -> float:
    "(c) images/s with per-sample torchvision transforms in `workers` DataLoader workers (best of `repeats`)."
    model, opt = _model_and_optimiser(spec, config)  # config.channels_last / bf16 say which of (c) and (c') this is
    loss_fn = NTXentLoss(config.temperature)
    loader = DataLoader(TwoViews(images), batch_size=config.batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    it = iter(loader)
    def batch():
        nonlocal it
        try: return next(it)
        except StopIteration: it = iter(loader); return next(it)
    for _ in range(2): simclr_step(model, loss_fn, opt, *batch(), config.channels_last, config.bf16)  # start-up, warm-up
    best = 0.
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps): simclr_step(model, loss_fn, opt, *batch(), config.channels_last, config.bf16).item()
        best = max(best, steps * config.batch_size / (time.perf_counter() - t))
    return best


class LightlyViews(Dataset):
    "What a lightly user feeds its SimCLR: PIL images through `SimCLRTransform` (two views), as torchvision data sets do."
    def __init__(self, images):
        from lightly.transforms import SimCLRTransform
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.transform = SimCLRTransform(input_size=32, gaussian_blur=0.0)  # lightly's CIFAR-10 settings: no blur at 32 px
    def __len__(self): return len(self.images)
    def __getitem__(self, i):
        from PIL import Image
        return tuple(self.transform(Image.fromarray(self.images[i])))


def lightly_pipeline(spec, config, steps: int, repeats: int, images, workers: int) -> float | None:
    "(d) images/s of lightly's SimCLR pipeline (None when lightly is not importable)."
    try: from lightly.loss import NTXentLoss as LightlyNTXent
    except ImportError: return None
    model, opt = _model_and_optimiser(spec, config)
    loss_fn = LightlyNTXent(temperature=config.temperature)
    loader = DataLoader(LightlyViews(images), batch_size=config.batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    it = iter(loader)
    def step():
        nonlocal it
        try: x0, x1 = next(it)
        except StopIteration: it = iter(loader); x0, x1 = next(it)
        loss = loss_fn(model(x0), model(x1))
        opt.zero_grad(); loss.backward(); opt.step()
        return loss.item()
    for _ in range(2): step()
    best = 0.
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps): step()
        best = max(best, steps * config.batch_size / (time.perf_counter() - t))
    return best


def augmentation_cpu_ms(images) -> tuple[float, float]:
    "CPU milliseconds per image (2 views) of the per-sample torchvision pipeline and of the batched one, 1 thread."
    from ssl_arch.augment import SimCLRAugmentation
    threads, ds, aug = torch.get_num_threads(), TwoViews(images), SimCLRAugmentation(32)
    torch.set_num_threads(1)
    try:
        for i in range(32): ds[i]
        aug(images[:128])
        t = time.process_time(); [ds[i] for i in range(len(images))]; per_sample = time.process_time() - t
        t = time.process_time(); [aug(images[i:i + 128]) for i in range(0, len(images), 128)]; batched = time.process_time() - t
    finally:
        torch.set_num_threads(threads)
    return 1000 * per_sample / len(images), 1000 * batched / len(images)


def learned_vs_random(data: str, seed: int) -> list[dict]:
    "Pretrain both tiny models with the `tiny` preset; kNN and L-BFGS linear probe vs the random-init twins."
    from ssl_arch.evaluate import extract_features, linear_probe, random_init_backbone
    (xtr, ytr), (xte, yte) = load_tensors(data, 'train'), load_tensors(data, 'test')
    rows = []
    for name, spec in MODELS.items():
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            m = pretrain(get_preset('tiny').pretrain_config(spec.id, data, seed=seed, knn_every=0), d, progress=False)
            seconds = time.perf_counter() - t
            trained = load_backbone(d)[0]
        for init, bb in (('simclr', trained), ('random', random_init_backbone(spec, True, seed))):
            ftr, fte = extract_features(bb, xtr, 32), extract_features(bb, xte, 32)
            for protocol in ('knn', 'lbfgs'):
                r = linear_probe(ftr, ytr, fte, yte, protocol=protocol, seed=seed)
                rows.append(dict(model=name, arch=spec.id, data=data, seed=seed, init=init, protocol=protocol,
                                 top1=round(r['top1'], 1), pretrain_s=round(seconds, 1) if init == 'simclr' else None,
                                 final_loss=round(m['final_loss'], 3) if init == 'simclr' else None))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=24,
                   help='timed steps per measurement (the DataLoader prefetches 4 batches: with few steps (c) looks faster)')
    p.add_argument('--repeats', type=int, default=2, help='timed blocks per measurement; the best one counts')
    p.add_argument('--batch-size', type=int, default=64, help="the tiny preset's")
    p.add_argument('--workers', type=int, default=2, help='DataLoader workers of the conventional pipeline')
    p.add_argument('--data', default='tiny-objects')
    p.add_argument('--learn', action='store_true', help='also pretrain with the tiny preset and compare with random init')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    images, _ = load_tensors(a.data, 'unlabelled')
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch_size}, best of {a.repeats} x "
          f"{a.steps} timed steps, "
          f"{a.data} 32x32; images/s count each image once (it gives 2 views)")
    tv_ms, batched_ms = augmentation_cpu_ms(images[:512])
    print(f"augmentation CPU cost per image (2 views, 1 thread): torchvision per-sample {tv_ms:.2f} ms, "
          f"batched on the device {batched_ms:.2f} ms")
    results = []
    for name, spec in MODELS.items():
        config = get_preset('tiny').pretrain_config(spec.id, a.data, batch_size=a.batch_size)
        config = config.__class__(**{**config.to_dict(), **speed_choices(spec.family, 'cpu')})
        ra = ceiling(spec, config, a.steps, a.repeats)
        rb = full_loop(spec, config, a.steps, a.repeats)
        plain = config.__class__(**{**config.to_dict(), 'channels_last': False, 'bf16': False})
        rc = conventional(spec, plain, a.steps, a.repeats, images[:a.steps * a.batch_size * 2], a.workers)
        rc2 = conventional(spec, config, a.steps, a.repeats, images[:a.steps * a.batch_size * 2], a.workers)
        rd = lightly_pipeline(spec, plain, a.steps, a.repeats, images[:a.steps * a.batch_size * 2], a.workers)
        results.append(dict(model=name, arch=spec.id, channels_last=config.channels_last, bf16=config.bf16,
                            ceiling=round(ra, 1), full_loop=round(rb, 1), conventional=round(rc, 1),
                            conventional_same_kernels=round(rc2, 1), b_over_a=round(rb / ra, 2),
                            b_over_c=round(rb / rc, 2), b_over_c_same_kernels=round(rb / rc2, 2),
                            lightly=rd and round(rd, 1), b_over_lightly=rd and round(rb / rd, 2)))
        r = results[-1]
        print(f"{name:20s} {spec.id:26s} (a) ceiling {ra:7.1f}  (b) full loop {rb:7.1f}  (c) conventional {rc:7.1f}  "
              f"(c') with the loop's kernels {rc2:7.1f} img/s\n{'':47s} b/a = {r['b_over_a']:.2f} (goal >= 0.9)   "
              f"b/c = {r['b_over_c']:.2f} (goal >= 2)   b/c' = {r['b_over_c_same_kernels']:.2f}", flush=True)
        print(f"{'':47s} (d) lightly {rd:7.1f} img/s   b/d = {rb / rd:.2f}" if rd else
              f"{'':47s} (d) lightly not importable: not run", flush=True)
    if a.learn:
        rows = learned_vs_random(a.data, a.seed)
        for r in rows: print(json.dumps(r))
        for name in MODELS:
            for protocol in ('knn', 'lbfgs'):
                s, rnd = (next(r['top1'] for r in rows if r['model'] == name and r['init'] == i and
                               r['protocol'] == protocol) for i in ('simclr', 'random'))
                print(f"{name:20s} {protocol:6s} SimCLR {s:5.1f}  random init {rnd:5.1f}  margin {s - rnd:+5.1f} points")
    print(json.dumps(results))


if __name__ == '__main__':
    main()
