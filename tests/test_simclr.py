"""SimCLR pretraining runs: kill -9 and resume, refusals, the NaN stop, load_backbone, logs, the experiment notebook.

Runs use the `smoke` preset on a width-8 ResNet and a few dozen images, so each takes seconds on 2 CPU cores.
"""
import json, os, random, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from ssl_arch.archs import get_spec
from ssl_arch.training import NonFiniteLossError, TrainingError, load_checkpoint, native_bf16
from ssl_arch.simclr import (CHECKPOINT, CONFIG_FILE, METRICS_FILE, PretrainError, PretrainConfig, load_backbone,
                             pretrain, resolve_config, TIMING_FIELDS)
from ssl_arch.evaluate import knn_monitor
from ssl_arch.preset import get_preset, read_config
from ssl_arch.cli import main as cli
from ssl_arch.files import save_json

ROOT = Path(__file__).resolve().parents[1]
ARCH, OTHER_ARCH, DATA = 'resnet-basic-2222-w8-g1', 'resnet-basic-2222-w4-g1', 'tiny-objects'
TIMING = TIMING_FIELDS  # wall-clock fields of the history: the only ones allowed to differ


def _quick(out, arch=ARCH, device=None, **kw):
    "A run of a few seconds at the smoke preset: 4 steps per epoch, no kNN monitor unless asked."
    config = get_preset('smoke').pretrain_config(arch, DATA, **{'epochs': 1, 'max_images': 128, 'knn_every': 0, **kw})
    return pretrain(config, out, device=device, monitor=knn_monitor(DATA) if config.knn_every else None, progress=False)


def _tensors_equal(a, b) -> bool:
    "Bitwise equality of nested dicts/lists of tensors and plain values."
    if isinstance(a, torch.Tensor): return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict): return a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def _strip_timing(history): return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


# ---------------------------------------------------------------- kill -9 and resume

def _cmd(out):
    return [sys.executable, '-m', 'ssl_arch.cli', 'pretrain', '--arch', ARCH, '--data', DATA, '--out', str(out),
            '--preset', 'smoke', '--epochs', '3', '--no-progress']


def _checkpoint_epoch(out) -> int:
    try: return load_checkpoint(Path(out) / CHECKPOINT)['epoch']
    except Exception: return 0


def test_kill_9_and_resume_is_bitwise_identical(tmp_path):
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    ref, run = tmp_path / 'uninterrupted', tmp_path / 'killed'
    subprocess.run(_cmd(ref), env=env, check=True, capture_output=True, timeout=300)
    rng = random.Random(0)
    for kill_after_epoch in (1, 2):   # kill twice, each time at a random moment after a checkpoint
        p = subprocess.Popen(_cmd(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while _checkpoint_epoch(run) < kill_after_epoch and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.4))
        p.send_signal(signal.SIGKILL); p.wait()
        assert p.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
        assert _checkpoint_epoch(run) < 3
    subprocess.run(_cmd(run), env=env, check=True, capture_output=True, timeout=300)
    a, b = load_checkpoint(ref / CHECKPOINT), load_checkpoint(run / CHECKPOINT)
    assert a['epoch'] == b['epoch'] == 3
    for key in ('model', 'head', 'optimizer', 'scheduler', 'rng', 'config'):
        assert _tensors_equal(a[key], b[key]), key
    assert _strip_timing(a['history']) == _strip_timing(b['history'])
    ma, mb = (json.loads((d / METRICS_FILE).read_text()) for d in (ref, run))
    assert ma['knn_top1'] == mb['knn_top1'] is not None and ma['final_loss'] == mb['final_loss']


# ---------------------------------------------------------------- refusals

def test_refuses_a_folder_holding_a_different_run(tmp_path):
    _quick(tmp_path)
    before = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(PretrainError, match=r"holds a different run \(epochs: 1 there, 2 here\)"):
        _quick(tmp_path, epochs=2)
    with pytest.raises(PretrainError, match="arch: 'resnet-basic-2222-w8-g1' there, 'resnet-basic-2222-w4-g1' here"):
        _quick(tmp_path, arch=OTHER_ARCH)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    t = (tmp_path / CHECKPOINT).stat().st_mtime_ns
    m = _quick(tmp_path)                          # same settings: a finished run is returned, not retrained
    assert m['epochs_completed'] == 1 and (tmp_path / CHECKPOINT).stat().st_mtime_ns == t


def test_refuses_a_checkpoint_of_another_architecture_or_config(tmp_path):
    src, dst = tmp_path / 'a', tmp_path / 'b'
    _quick(src)
    dst.mkdir()
    other = resolve_config(get_preset('smoke').pretrain_config(OTHER_ARCH, DATA, epochs=1, max_images=128, knn_every=0),
                           get_spec(OTHER_ARCH), torch.device('cpu'), 1, 32)
    save_json(other.to_dict(), dst / CONFIG_FILE)
    shutil.copy(src / CHECKPOINT, dst / CHECKPOINT)
    before = (dst / CHECKPOINT).read_bytes()
    with pytest.raises(PretrainError, match="a checkpoint of this run"):
        _quick(dst, arch=OTHER_ARCH)
    ck = load_checkpoint(dst / CHECKPOINT)        # config rewritten to match: the weights still do not fit
    ck['config'], ck['epoch'] = json.loads((dst / CONFIG_FILE).read_text()), 0
    torch.save(ck, dst / CHECKPOINT)
    with pytest.raises(TrainingError, match="its backbone does not fit this model"):
        _quick(dst, arch=OTHER_ARCH)
    (dst / CHECKPOINT).write_bytes(b'not a checkpoint')
    with pytest.raises(TrainingError, match="cannot be read"):
        _quick(dst, arch=OTHER_ARCH)
    (dst / CHECKPOINT).write_bytes(before)


# ---------------------------------------------------------------- the NaN stop

def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from ssl_arch.archs import build_backbone
    torch.manual_seed(0)
    backbone = build_backbone(ARCH, small_images=True)
    calls = []
    def poison(module, inputs, output):   # from the 3rd forward pass (epoch 2, step 1) on, features are NaN
        calls.append(1)
        return output * float('nan') if len(calls) >= 3 else output
    backbone.register_forward_hook(poison)
    config = get_preset('smoke').pretrain_config(ARCH, DATA, epochs=3, max_images=64, knn_every=0)
    with pytest.raises(NonFiniteLossError, match=r"loss=nan at step 3 \(epoch 2, step 1 of 2\); the last good "
                                                 r"checkpoint stays: .*checkpoint.pt \(epoch 1\)"):
        pretrain(config, tmp_path, backbone=backbone, progress=False)
    ck = load_checkpoint(tmp_path / CHECKPOINT)
    assert ck['epoch'] == 1 and all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())
    assert json.loads((tmp_path / METRICS_FILE).read_text())['epochs_completed'] == 1


# ---------------------------------------------------------------- using a run

def test_load_backbone_and_logs(tmp_path):
    m = _quick(tmp_path, epochs=2, knn_every=1)
    assert [h['epoch'] for h in m['history']] == [1, 2] and all(h['knn_top1'] is not None for h in m['history'])
    backbone, spec, config = load_backbone(tmp_path)
    assert spec.id == ARCH and config['data'] == DATA and config['epochs'] == 2 and config['small_images']
    ck = load_checkpoint(tmp_path / CHECKPOINT)
    assert _tensors_equal(backbone.state_dict(), ck['model']) and not backbone.training
    assert config['bf16'] is native_bf16('cpu') and config['channels_last'] is True  # the recorded CPU choice for ResNets
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev = EventAccumulator(str(tmp_path / 'tb')).Reload()
    tags = set(ev.Tags()['scalars'])
    assert {'train/loss', 'train/lr', 'epoch/loss', 'epoch/knn_top1'} <= tags
    assert len(ev.Scalars('train/loss')) == 2 * 4


def test_load_backbone_refuses_an_unfinished_run(tmp_path):
    _quick(tmp_path, epochs=1)
    ck = load_checkpoint(tmp_path / CHECKPOINT)
    ck['config']['epochs'] = 5
    torch.save(ck, tmp_path / CHECKPOINT)
    with pytest.raises(PretrainError, match="stopped after epoch 1 of 5"):
        load_backbone(tmp_path)
    assert load_backbone(tmp_path, allow_incomplete=True)[2]['epochs_completed'] == 1


# ---------------------------------------------------------------- the experiment notebook

def test_experiment_notebook_with_papermill(tmp_path):
    nb = ROOT / 'nbs' / 'experiments' / 'pretrain.ipynb'
    papermill = Path(sys.executable).with_name('papermill')
    h = subprocess.run([str(papermill), '--help-notebook', str(nb)], capture_output=True, text=True, timeout=120)
    assert h.returncode == 0
    for name in ('arch', 'data', 'epochs', 'batch_size', 'lr', 'temperature', 'seed', 'out', 'preset'):
        assert f'  {name}:' in h.stdout, (name, h.stdout)
    out = tmp_path / 'run'
    r = subprocess.run([str(papermill), str(nb), str(tmp_path / 'executed.ipynb'), '-k', 'python3',
                        '-p', 'arch', ARCH, '-p', 'data', DATA, '-p', 'preset', 'smoke', '-p', 'epochs', '1',
                        '-p', 'out', str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics['epochs_completed'] == 1 and metrics['config']['arch'] == ARCH
    assert load_checkpoint(out / CHECKPOINT)['epoch'] == 1


# ---------------------------------------------------------------- a run's config.json is an input

def test_config_json_fed_back_reproduces_the_run(tmp_path, capsys):
    a, b = tmp_path / 'a', tmp_path / 'b'
    assert cli(['pretrain', '--arch', ARCH, '--data', DATA, '--preset', 'smoke', '--set', 'pretrain.max_images=64',
                '--epochs', '2', '--knn-every', '0', '--no-progress', '--out', str(a)]) == 0
    assert cli(['pretrain', '--config', str(a / CONFIG_FILE), '--out', str(b), '--no-progress']) == 0
    ma, mb = (json.loads((d / METRICS_FILE).read_text()) for d in (a, b))
    assert ma['config'] == mb['config'] and ma['config']['max_images'] == 64 and ma['config']['epochs'] == 2
    assert _strip_timing(ma['history']) == _strip_timing(mb['history'])
    assert read_config(PretrainConfig, a / CONFIG_FILE) == read_config(PretrainConfig, b / CONFIG_FILE)
    assert cli(['pretrain', '--config', str(a / CONFIG_FILE), '--epochs', '3', '--out', str(tmp_path / 'c'), '--no-progress']) == 0
    assert json.loads((tmp_path / 'c' / METRICS_FILE).read_text())['epochs_completed'] == 3  # an option given wins
