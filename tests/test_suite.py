"""The embedded suite: built offline in seconds, deterministic, cached and rebuilt when stale or damaged. (Its content
as the one entry point serves it, shapes, balanced labels, disjoint splits, is tested in nbs/01_data.ipynb.)"""
import json, socket, warnings

import pytest

from ssl_arch import suite
from ssl_arch.data import load_tensors
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
