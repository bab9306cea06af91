"""The embedded suite: built offline in seconds, deterministic, cached and rebuilt when stale or damaged; and its
content as the one entry point serves it (shapes, balanced labels, disjoint splits, the mini corpus a subset)."""
import json, socket, warnings

import numpy as np
import pytest
import torch

from ssl_arch import suite
from ssl_arch.data import get_dataset, load_tensors, sample_grid
from ssl_arch.datasets import data_dir, dataset_info, dataset_names


@pytest.fixture
def no_network(monkeypatch):
    "Any attempt to open a network connection fails the test."
    def refuse(*a, **k): raise AssertionError(f'network access attempted: {a}')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket.socket, 'connect_ex', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setattr(socket, 'getaddrinfo', refuse)


@pytest.fixture(scope='module')
def built_suite(tmp_path_factory):
    "A suite built once for this module, in its own folder, with the network blocked."
    root = tmp_path_factory.mktemp('suite')
    mp = pytest.MonkeyPatch()
    def refuse(*a, **k): raise AssertionError(f'network access attempted: {a}')
    mp.setattr(socket.socket, 'connect', refuse)
    mp.setattr(socket, 'create_connection', refuse)
    mp.setattr(socket, 'getaddrinfo', refuse)
    mp.setenv('SSL_ARCH_DATA', str(root))
    suite._load_source.cache_clear(); suite._photo.cache_clear()   # re-read the bundled files under the block
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        manifest = suite.suite_manifest()
    yield root, manifest
    mp.undo()


def test_suite_builds_offline_in_seconds(built_suite):
    root, m = built_suite
    assert data_dir() == root
    assert set(m['sets']) == set(dataset_names())
    assert m['build_seconds'] < 60, m['build_seconds']                  # about 3-5 s on 2 idle cores
    for name, s in m['sets'].items():
        assert (root / s['file']).exists()
        assert s['sizes'] == dataset_info(name).split_sizes


def test_suite_is_deterministic(built_suite, tmp_path, no_network):
    root, m = built_suite
    other = suite.build_suite(tmp_path)
    assert {k: v['sha256'] for k, v in other['sets'].items()} == {k: v['sha256'] for k, v in m['sets'].items()}


def test_stale_or_damaged_suite_is_rebuilt(tmp_path, no_network):
    m = suite.build_suite(tmp_path)
    path = tmp_path / 'manifest.json'
    stale = dict(m, recipe_hash='0' * 16)
    path.write_text(json.dumps(stale))
    suite._VERIFIED.clear()
    with pytest.warns(UserWarning, match='recipe 0000000000000000'):
        suite.ensure_suite(tmp_path)
    assert json.loads(path.read_text())['recipe_hash'] == suite.recipe_hash()
    f = tmp_path / 'tiny-faces.npz'
    f.write_bytes(f.read_bytes()[:1000])                                # a truncated file
    suite._VERIFIED.clear()
    with pytest.warns(UserWarning, match='does not match its SHA-256'):
        x, y = load_tensors('tiny-faces', 'test', root=tmp_path)
    assert x.shape == (1000, 3, 32, 32) and suite._sha256(f) == m['sets']['tiny-faces']['sha256']
    (tmp_path / 'manifest.json').unlink()
    suite._VERIFIED.clear()
    with pytest.warns(UserWarning, match='no manifest.json'):
        suite.ensure_suite(tmp_path)
    assert not list(tmp_path.glob('.*.tmp'))                            # atomic writes leave no temporaries


def test_splits_shapes_and_labels(built_suite):
    for name in dataset_names():
        info = dataset_info(name)
        for split, n in info.split_sizes.items():
            x, y = load_tensors(name, split)
            assert x.shape == (n, 3, 32, 32) and x.dtype == torch.uint8
            assert 0 < x.float().std() and x.max() > 100, (name, split)     # real content, not blank
            if split == 'unlabelled':
                assert y is None
                continue
            assert y.dtype == torch.int64 and y.shape == (n,)
            counts = torch.bincount(y, minlength=info.num_classes)
            assert len(counts) == info.num_classes and counts.min() >= n // info.num_classes, (name, split, counts)


def test_train_and_test_differ_and_mini_is_a_subset(built_suite):
    a, _ = load_tensors('tiny-objects', 'train')
    b, _ = load_tensors('tiny-objects', 'test')
    assert not set(map(bytes, a.flatten(1).numpy())) & set(map(bytes, b.flatten(1).numpy()))
    full, _ = load_tensors('tiny-species', 'unlabelled')
    mini, _ = load_tensors('tiny-species-mini', 'unlabelled')
    assert len(mini) == 1000 and set(map(bytes, mini.flatten(1).numpy())) <= set(map(bytes, full.flatten(1).numpy()))
    for s in ('train', 'test'):
        assert torch.equal(load_tensors('tiny-species-mini', s)[0], load_tensors('tiny-species', s)[0])


def test_embedded_sets_through_the_entry_point(built_suite):
    ds = get_dataset('tiny-digits', 'train', transform=lambda x: x.float() / 255)
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and 0 <= y < 10
    g = sample_grid(['tiny-digits', 'tiny-shapes'], n_per_set=10)
    assert g.shape == (2 * 34 + 2, 10 * 34 + 2, 3) and g.dtype == np.uint8
