"""Tests of `ssl_arch.evaluate` beyond its notebook, each a few seconds: the feature cache on a whole embedded data set
(written once, read back, keyed by weights and feature size), a checkpoint and its random-init floor, the JSON writer,
and the experiment notebook under papermill."""
import json

import pytest
import torch

from ssl_arch import data as ssl_data
from ssl_arch import evaluate as ev
from ssl_arch.archs import ResNetSpec

TINY = ResNetSpec('basic', (1, 1, 1, 1), width=8)  # 64-d features, milliseconds per batch
# Everything here is tiny, and the tests share 2 cores with other jobs: a second thread only adds waiting
# (measured on the busy machine: 1000 images through TINY take 0.4 s on one thread, 3.2 s on two).
torch.set_num_threads(1)


def _without_time(r): return {k: v for k, v in r.items() if k != 'probe_s'}


# --- the feature cache on the embedded suite ----------------------------------------------------------------------

SMALL_SET = 'tiny-faces'  # 2 classes, 1000 + 1000 images


def test_cache_is_written_once_and_read_back(tmp_path, monkeypatch):
    net = ev.random_init_backbone(TINY, seed=0)
    first = ev.evaluate_backbone(net, SMALL_SET, cache_dir=tmp_path)
    files = sorted((tmp_path / ev.weights_hash(net)).iterdir())
    assert [f.name.startswith(f'{SMALL_SET}-') and f.name.endswith(('.features.npy', '.labels.npy')) for f in files] == [True] * 4
    def no_raw_images(*a, **k): raise AssertionError('raw images were read although the cache holds the features')
    monkeypatch.setattr(ssl_data, 'load_tensors', no_raw_images)
    again = ev.evaluate_backbone(net, SMALL_SET, cache_dir=tmp_path)
    assert [_without_time(r) | {'features_s': 0} for r in again] == [_without_time(r) | {'features_s': 0} for r in first]
    assert again[0]['eval_data'] == SMALL_SET and again[0]['n_train'] == 1000 and again[0]['n_test'] == 1000
    # other weights: another key, so the cached features are not reused
    other = ev.random_init_backbone(TINY, seed=1)
    with pytest.raises(AssertionError, match='raw images were read'):
        ev.evaluate_backbone(other, SMALL_SET, cache_dir=tmp_path)


def test_cache_refuses_features_of_another_dimension(tmp_path):
    net = ev.random_init_backbone(TINY, seed=0)
    ev.evaluate_backbone(net, SMALL_SET, cache_dir=tmp_path, cache_key='shared')
    wider = ev.random_init_backbone(ResNetSpec('basic', (1, 1, 1, 1), width=16), seed=0)
    with pytest.raises(ValueError, match=r"feature_dim=64 of the cached features .* the backbone's feature_dim 128"):
        ev.evaluate_backbone(wider, SMALL_SET, cache_dir=tmp_path, cache_key='shared')


# --- checkpoints: evaluate_checkpoint, probe_run, the experiment notebook ----------------------------------------

@pytest.fixture(scope='module')
def shared_cache(tmp_path_factory):
    "One feature cache for the checkpoint tests: each (weights, data set, split) is extracted once."
    return tmp_path_factory.mktemp('features')


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    "A finished (one-epoch, 64-image) SimCLR run of the tiny ResNet on a pretraining corpus."
    from ssl_arch.preset import get_preset
    from ssl_arch.simclr import pretrain
    out = tmp_path_factory.mktemp('simclr') / 'run'
    config = get_preset('smoke').pretrain_config(TINY.id, 'tiny-objects', epochs=1, batch_size=32, max_images=64, knn_every=0)
    pretrain(config, out, device='cpu', progress=False)
    return out


def test_evaluate_checkpoint_and_its_random_init_floor(run_dir, shared_cache):
    learned = ev.evaluate_checkpoint(run_dir, SMALL_SET, cache_dir=shared_cache)
    floor = ev.evaluate_checkpoint(run_dir, [SMALL_SET], cache_dir=shared_cache, init='random')
    (a,), (b,) = learned, floor
    for r in (a, b):  # the results table's columns
        assert {'arch_id', 'family', 'params', 'params_with_classifier', 'flops', 'top_bottom_ratio', 'pretrain_data',
                'eval_data', 'split', 'protocol', 'init', 'seed', 'epochs', 'top1', 'config_hash', 'ssl_arch_version',
                'torch_version', 'stem'} <= set(r)
        assert (r['arch_id'], r['family'], r['eval_data'], r['split'], r['protocol'], r['stem'], r['pretrain_data']) == \
               (TINY.id, 'resnet', SMALL_SET, 'test', 'lbfgs', 'cifar', 'tiny-objects')
    assert (a['init'], a['epochs'], b['init'], b['epochs']) == ('simclr', 1, 'random', 0)
    assert a['weights_hash'] != b['weights_hash']  # the floor really has other weights
    assert b['weights_hash'] == ev.weights_hash(ev.random_init_backbone(TINY, seed=0))
    # the second evaluation of the same checkpoint reads the cache and gives the same number
    assert ev.evaluate_checkpoint(run_dir, SMALL_SET, cache_dir=shared_cache)[0]['top1'] == a['top1']


def test_probe_run_writes_one_record_per_data_set_and_init(run_dir, shared_cache, tmp_path):
    out = tmp_path / 'nested' / 'probe.json'
    records = ev.probe_run(run_dir, f'{SMALL_SET},tiny-textures', out, protocol='knn', seed=1, init='both',
                           cache_dir=shared_cache)
    assert json.loads(out.read_text()) == json.loads(json.dumps(records))
    assert [(r['eval_data'], r['init'], r['protocol'], r['seed']) for r in records] == [
        (SMALL_SET, 'simclr', 'knn', 1), ('tiny-textures', 'simclr', 'knn', 1),
        (SMALL_SET, 'random', 'knn', 1), ('tiny-textures', 'random', 'knn', 1)]
    assert [p.name for p in out.parent.iterdir()] == ['probe.json']  # no temporary file left


def test_linear_eval_notebook_runs_under_papermill(run_dir, shared_cache, tmp_path):
    import papermill as pm
    from pathlib import Path
    nb = Path(__file__).resolve().parents[1] / 'nbs' / 'experiments' / 'linear_eval.ipynb'
    out = tmp_path / 'records.json'
    pm.execute_notebook(str(nb), str(tmp_path / 'executed.ipynb'), kernel_name='python3', language='python',
                        progress_bar=False, parameters=dict(checkpoint=str(run_dir), data=SMALL_SET, protocol='knn',
                                                            seed=0, init='both', out=str(out),
                                                            cache_dir=str(shared_cache)))
    records = json.loads(out.read_text())
    assert [(r['eval_data'], r['init']) for r in records] == [(SMALL_SET, 'simclr'), (SMALL_SET, 'random')]
