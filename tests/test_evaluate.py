"""Tests of `ssl_arch.evaluate` beyond its notebook: the L-BFGS probe against scikit-learn, determinism, the feature
cache on the embedded suite, the random-init floor, checkpoints, the JSON writer, the experiment notebook, refusals."""
import json, os

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from ssl_arch import data as ssl_data
from ssl_arch import evaluate as ev
from ssl_arch.archs import ResNetSpec

TINY = ResNetSpec('basic', (1, 1, 1, 1), width=8)  # 64-d features, milliseconds per batch
# Everything here is tiny, and the tests share 2 cores with other jobs: a second thread only adds waiting
# (measured on the busy machine: 1000 images through TINY take 0.4 s on one thread, 3.2 s on two).
torch.set_num_threads(1)


def gaussian_problem(n_train=1500, n_test=1000, num_classes=10, d=64, separation=0.25, seed=0):
    "Overlapping Gaussian classes (top-1 around 60%) with features on very different scales and offsets."
    g = torch.Generator().manual_seed(seed)
    centres = separation * torch.randn(num_classes, d, generator=g)
    scales = torch.logspace(-1, 1, d)
    def draw(n):
        y = torch.randint(0, num_classes, (n,), generator=g)
        return (centres[y] + torch.randn(n, d, generator=g)) * scales + 5, y
    return (*draw(n_train), *draw(n_test))


def sklearn_top1(xtr, ytr, xte, yte, l2):
    "scikit-learn's multinomial logistic regression with the same objective: C = 1 / (l2 * n_train)."
    mean, std = ev.standardiser(xtr.double())
    prep = lambda x: ((x.double() - mean) / std).numpy()
    clf = LogisticRegression(C=1 / (l2 * len(xtr)), tol=1e-10, max_iter=10_000).fit(prep(xtr), ytr.numpy())
    return 100 * float((clf.predict(prep(xte)) == yte.numpy()).mean()), clf


# --- the probe against scikit-learn -------------------------------------------------------------------------------

@pytest.mark.parametrize('l2', [1e-4, 1e-2, 1.0])
def test_logistic_regression_matches_sklearn(l2):
    xtr, ytr, xte, yte = gaussian_problem()
    ours = ev.fit_logistic_regression(xtr, ytr, 10, l2)
    top1 = 100 * float((ours.predict(xte) == yte).double().mean())
    theirs, clf = sklearn_top1(xtr, ytr, xte, yte, l2)
    assert 40 < theirs < 90  # a problem where the regularisation matters
    assert abs(top1 - theirs) <= 0.5
    # the same minimiser, not only the same accuracy
    np.testing.assert_allclose(ours.weight.numpy(), clf.coef_.T, atol=2e-3 * np.abs(clf.coef_).max())


def test_lbfgs_probe_matches_sklearn_at_the_chosen_strength():
    xtr, ytr, xte, yte = gaussian_problem(seed=1)
    r = ev.linear_probe(xtr, ytr, xte, yte, 'lbfgs', seed=0)
    assert r['protocol'] == 'lbfgs' and r['l2'] in ev.L2_GRID and r['n_val'] == 300
    assert r['val_top1'] == max(r['val_top1_grid'])
    theirs, _ = sklearn_top1(xtr, ytr, xte, yte, r['l2'])
    assert abs(r['top1'] - theirs) <= 0.5
    # the held-out choice matters: the strongest and the weakest regularisation do worse on held-out data
    assert r['val_top1'] > r['val_top1_grid'][0] and r['val_top1'] >= r['val_top1_grid'][-1]


# --- determinism, protocols, refusals -----------------------------------------------------------------------------

def _without_time(r): return {k: v for k, v in r.items() if k != 'probe_s'}

@pytest.mark.parametrize('protocol', ev.PROTOCOLS)
def test_probe_is_seeded_and_names_its_protocol(protocol):
    xtr, ytr, xte, yte = gaussian_problem(n_train=600, n_test=300, seed=2)
    opts = dict(epochs=5) if protocol == 'sgd' else {}
    a = ev.linear_probe(xtr, ytr, xte, yte, protocol, seed=3, **opts)
    b = ev.linear_probe(xtr, ytr, xte, yte, protocol, seed=3, **opts)
    assert _without_time(a) == _without_time(b)
    assert a['protocol'] == protocol and a['seed'] == 3 and 0 <= a['top1'] <= 100
    assert (a['n_train'], a['n_test'], a['feature_dim'], a['num_classes']) == (600, 300, 64, 10)
    json.dumps(a)  # a record is JSON-ready


def test_seed_changes_the_held_out_split():
    y = torch.arange(10).repeat(30)
    k0, h0 = ev.stratified_split(y, 0.2, seed=0)
    k1, h1 = ev.stratified_split(y, 0.2, seed=1)
    assert not torch.equal(h0, h1)
    assert torch.bincount(y[h0]).tolist() == [6] * 10 == torch.bincount(y[h1]).tolist()


def test_probe_refusals():
    xtr, ytr, xte, yte = gaussian_problem(n_train=100, n_test=50)
    with pytest.raises(ValueError, match="protocol='ridge' is not allowed: one of 'lbfgs', 'sgd', 'knn'"):
        ev.linear_probe(xtr, ytr, xte, yte, 'ridge')
    with pytest.raises(ValueError, match=r"test_y='labels in \[0, 9\]' is not allowed: labels in \[0, 4\]"):
        ev.linear_probe(xtr, ytr % 5, xte, yte, num_classes=5)
    with pytest.raises(ValueError, match=r"train_y='labels in \[-1, 8\]' is not allowed"):
        ev.linear_probe(xtr, ytr - 1, xte, yte)
    with pytest.raises(ValueError, match=r"test_x.shape=\(50, 32\) is not allowed: \(M, 64\)"):
        ev.linear_probe(xtr, ytr, xte[:, :32], yte)
    with pytest.raises(ValueError, match=r"train_y.shape=\(99,\) is not allowed"):
        ev.linear_probe(xtr, ytr[:99], xte, yte)
    with pytest.raises(ValueError, match=r"features.shape=\(50, 32\) is not allowed: \(N, 64\)"):
        ev.fit_logistic_regression(xtr, ytr, 10, 1.0).predict(xte[:, :32])
    with pytest.raises(ValueError, match="k=0 is not allowed"):
        ev.linear_probe(xtr, ytr, xte, yte, 'knn', k=0)


# --- the feature cache on the embedded suite ----------------------------------------------------------------------

SMALL_SET = 'tiny-faces'  # 2 classes, 1000 + 1000 images


def test_cache_is_written_once_and_read_back(tmp_path, monkeypatch):
    net = ev.random_init_backbone(TINY, seed=0)
    first = ev.evaluate_backbone(net, SMALL_SET, cache_dir=tmp_path)
    files = sorted((tmp_path / ev.weights_hash(net)).iterdir())
    assert [f.name.startswith(f'{SMALL_SET}-') and f.suffix == '.pt' for f in files] == [True, True]
    def no_raw_images(*a, **k): raise AssertionError('raw images were read although the cache holds the features')
    monkeypatch.setattr(ssl_data, 'load_tensors', no_raw_images)
    again = ev.evaluate_backbone(net, SMALL_SET, cache_dir=tmp_path)
    assert [_without_time(r) | {'features_s': 0} for r in again] == [_without_time(r) | {'features_s': 0} for r in first]
    assert again[0]['eval_data'] == SMALL_SET and again[0]['n_train'] == 1000 and again[0]['n_test'] == 1000
    # other weights: another key, so the cached features are not reused
    other = ev.random_init_backbone(TINY, seed=1)
    with pytest.raises(AssertionError, match='raw images were read'):
        ev.evaluate_backbone(other, SMALL_SET, cache_dir=tmp_path)


def test_cached_features_equal_fresh_features(tmp_path):
    net = ev.random_init_backbone(TINY, seed=0)
    cache = ev.FeatureCache(tmp_path, 'explicit-key', net.feature_dim)
    x1, y1 = ev.cached_features(net, SMALL_SET, 'test', cache)
    images, labels = ssl_data.load_tensors(SMALL_SET, 'test')
    torch.testing.assert_close(x1, ev.extract_features(net, images, 32))
    assert torch.equal(y1, labels) and x1.shape == (1000, net.feature_dim) and x1.dtype == torch.float32
    x2, _ = ev.cached_features(net, SMALL_SET, 'test', cache)
    assert torch.equal(x1, x2)


def test_cache_refuses_features_of_another_dimension(tmp_path):
    net = ev.random_init_backbone(TINY, seed=0)
    ev.evaluate_backbone(net, SMALL_SET, cache_dir=tmp_path, cache_key='shared')
    wider = ev.random_init_backbone(ResNetSpec('basic', (1, 1, 1, 1), width=16), seed=0)
    with pytest.raises(ValueError, match=r"feature_dim=64 of the cached features .* the backbone's feature_dim 128"):
        ev.evaluate_backbone(wider, SMALL_SET, cache_dir=tmp_path, cache_key='shared')


def test_a_failed_cache_write_leaves_nothing(tmp_path, monkeypatch):
    cache = ev.FeatureCache(tmp_path, 'k', 4)
    def crash(*a): raise KeyboardInterrupt  # a kill between writing and renaming
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(KeyboardInterrupt):
        cache.save('tiny-faces', 'train', 32, torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    monkeypatch.undo()
    assert list((tmp_path / 'k').iterdir()) == [] and cache.load('tiny-faces', 'train', 32) is None


def test_weights_hash_follows_the_weights():
    net = ev.random_init_backbone(TINY, seed=0)
    before = ev.weights_hash(net)
    assert ev.weights_hash(ev.random_init_backbone(TINY, seed=0)) == before
    with torch.no_grad(): next(net.parameters())[0].add_(1e-3)
    assert ev.weights_hash(net) != before


# --- the random-init floor ----------------------------------------------------------------------------------------

def test_random_init_floor_is_fixed_by_its_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(123); expected = torch.rand(1)
    torch.manual_seed(123)
    a = ev.random_init_backbone(TINY, seed=5)
    assert torch.equal(torch.rand(1), expected)  # the global RNG did not move
    b = ev.random_init_backbone(TINY, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.small_images and a.spec == TINY


def test_unknown_data_set_is_refused_before_any_work(tmp_path):
    net = ev.random_init_backbone(TINY, seed=0)
    with pytest.raises(ValueError, match="data='imagenet-21k' is not allowed: a data set name"):
        ev.evaluate_backbone(net, f'{SMALL_SET},imagenet-21k', cache_dir=tmp_path)
    assert not tmp_path.joinpath(ev.weights_hash(net)).exists()


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


def test_checkpoint_refusals(run_dir, tmp_path):
    out = tmp_path / 'x.json'
    with pytest.raises(ValueError, match="checkpoint='.*no-such-run' is not allowed: an existing run folder"):
        ev.probe_run(tmp_path / 'no-such-run', SMALL_SET, out)
    foreign = tmp_path / 'foreign'; foreign.mkdir()
    (foreign / 'checkpoint.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match="checkpoint=.* is not allowed"):
        ev.probe_run(foreign, SMALL_SET, out)
    with pytest.raises(ValueError, match="data='cifar1000' is not allowed"):
        ev.probe_run(run_dir, 'cifar1000', out)
    with pytest.raises(ValueError, match="protocol='linear' is not allowed"):
        ev.probe_run(run_dir, SMALL_SET, out, protocol='linear')
    with pytest.raises(ValueError, match="init='imagenet' is not allowed"):
        ev.probe_run(run_dir, SMALL_SET, out, init='imagenet')
    assert not out.exists()


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


def test_options_of_another_protocol_are_refused_before_any_work(tmp_path):
    net = ev.random_init_backbone(TINY, seed=0)
    with pytest.raises(ValueError, match=r"option='k' is not allowed: an option of protocol 'lbfgs'"):
        ev.evaluate_backbone(net, SMALL_SET, cache_dir=tmp_path, k=5)
    assert not tmp_path.joinpath(ev.weights_hash(net)).exists()
