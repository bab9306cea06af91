"""The data layer: the embedded suite (offline, deterministic, cached, rebuilt when stale), the registry, and the real
on-disk formats read through the one entry point (CIFAR pickles, class folders of PNGs, split manifests, CUB/MIT-67
and Sports8 layouts), with every bad-input case."""
import json, os, pickle, socket, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_arch import data
from ssl_arch.data import (DataError, dataset_info, dataset_names, dataset_table, downstream_sets, get_dataset,
                           load_tensors, pretraining_corpora, sample_grid, MANIFEST)


@pytest.fixture
def no_network(monkeypatch):
    "Any attempt to open a network connection fails the test."
    def refuse(*a, **k): raise AssertionError(f'network access attempted: {a}')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket.socket, 'connect_ex', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setattr(socket, 'getaddrinfo', refuse)


@pytest.fixture(scope='module')
def suite(tmp_path_factory):
    "A suite built once for this module, in its own folder, with the network blocked."
    root = tmp_path_factory.mktemp('suite')
    mp = pytest.MonkeyPatch()
    def refuse(*a, **k): raise AssertionError(f'network access attempted: {a}')
    mp.setattr(socket.socket, 'connect', refuse)
    mp.setattr(socket, 'create_connection', refuse)
    mp.setattr(socket, 'getaddrinfo', refuse)
    mp.setenv('SSL_ARCH_DATA', str(root))
    data._load_source.cache_clear(); data._photo.cache_clear()     # re-read the bundled files under the block
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        manifest = data.suite_manifest()
    yield root, manifest
    mp.undo()


# ---------------------------------------------------------------- the embedded suite

def test_suite_builds_offline_in_seconds(suite):
    root, m = suite
    assert data.data_dir() == root
    assert set(m['sets']) == set(dataset_names())
    assert m['build_seconds'] < 60, m['build_seconds']                  # about 3-5 s on 2 idle cores
    for name, s in m['sets'].items():
        assert (root / s['file']).exists()
        assert s['sizes'] == dataset_info(name).split_sizes


def test_suite_is_deterministic(suite, tmp_path, no_network):
    root, m = suite
    other = data.build_suite(tmp_path)
    assert {k: v['sha256'] for k, v in other['sets'].items()} == {k: v['sha256'] for k, v in m['sets'].items()}


def test_stale_or_damaged_suite_is_rebuilt(tmp_path, no_network):
    m = data.build_suite(tmp_path)
    path = tmp_path / 'manifest.json'
    stale = dict(m, recipe_hash='0' * 16)
    path.write_text(json.dumps(stale))
    data._VERIFIED.clear()
    with pytest.warns(UserWarning, match='recipe 0000000000000000'):
        data.ensure_suite(tmp_path)
    assert json.loads(path.read_text())['recipe_hash'] == data.recipe_hash()
    f = tmp_path / 'tiny-faces.npz'
    f.write_bytes(f.read_bytes()[:1000])                                # a truncated file
    data._VERIFIED.clear()
    with pytest.warns(UserWarning, match='does not match its SHA-256'):
        x, y = load_tensors('tiny-faces', 'test', root=tmp_path)
    assert x.shape == (1000, 3, 32, 32) and data._sha256(f) == m['sets']['tiny-faces']['sha256']
    (tmp_path / 'manifest.json').unlink()
    data._VERIFIED.clear()
    with pytest.warns(UserWarning, match='no manifest.json'):
        data.ensure_suite(tmp_path)
    assert not list(tmp_path.glob('.*.tmp'))                            # atomic writes leave no temporaries


def test_splits_shapes_labels_and_roles(suite):
    assert len(pretraining_corpora()) >= 3 and len(downstream_sets()) >= 6
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
        assert set(info.in_distribution) == set(pretraining_corpora())
        assert info.licence and info.sources and info.description
    # each corpus is in distribution for itself, and every corpus has downstream sets near and far
    for c in pretraining_corpora():
        assert dataset_info(c).in_distribution[c]
        near = [d for d in downstream_sets() if dataset_info(d).in_distribution[c]]
        assert 1 <= len(near) < len(downstream_sets()), (c, near)


def test_train_and_test_differ_and_mini_is_a_subset(suite):
    a, _ = load_tensors('tiny-objects', 'train')
    b, _ = load_tensors('tiny-objects', 'test')
    assert not set(map(bytes, a.flatten(1).numpy())) & set(map(bytes, b.flatten(1).numpy()))
    full, _ = load_tensors('tiny-species', 'unlabelled')
    mini, _ = load_tensors('tiny-species-mini', 'unlabelled')
    assert len(mini) == 1000 and set(map(bytes, mini.flatten(1).numpy())) <= set(map(bytes, full.flatten(1).numpy()))
    for s in ('train', 'test'):
        assert torch.equal(load_tensors('tiny-species-mini', s)[0], load_tensors('tiny-species', s)[0])


def test_registry_records_and_errors(suite):
    rows = dataset_table()
    assert {r['name'] for r in rows} >= set(dataset_names()) | {'imagenet', 'inat2021', 'inat2021-mini', 'cifar10',
                                                                'svhn', 'dogs', 'cub200', 'mit67', 'sports8', 'nabirds'}
    for r in rows:
        json.dumps(r)
        assert {'name', 'role', 'num_classes', 'train_size', 'test_size', 'source', 'licence'} <= set(r)
    assert dataset_info('mit67').in_distribution['imagenet'] is False
    assert dataset_info('cub200').in_distribution['imagenet'] is True
    with pytest.raises(DataError, match="name='tiny-imagenet' is not allowed"): get_dataset('tiny-imagenet', 'train')
    with pytest.raises(DataError, match="split='unlabelled' is not allowed"): load_tensors('tiny-digits', 'unlabelled')
    with pytest.raises(DataError, match="split='val' is not allowed"): load_tensors('tiny-objects', 'val')
    ds = get_dataset('tiny-digits', 'train', transform=lambda x: x.float() / 255)
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and 0 <= y < 10
    g = sample_grid(['tiny-digits', 'tiny-shapes'], n_per_set=10)
    assert g.shape == (2 * 34 + 2, 10 * 34 + 2, 3) and g.dtype == np.uint8


# ---------------------------------------------------------------- CIFAR pickle batches (torchvision's reader)

def _write_cifar(root: Path, per_batch=4, seed=0):
    "Small CIFAR-10 python batches in the real on-disk format; returns the images (N,3,32,32) and labels written."
    rng = np.random.default_rng(seed)
    d = root / 'cifar-10-batches-py'
    d.mkdir(parents=True)
    xs, ys = {}, {}
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)      # rows: R plane, G plane, B plane
        y = rng.integers(0, 10, per_batch).tolist()
        with open(d / name, 'wb') as f:
            pickle.dump({'batch_label': name.encode(), 'labels': y, 'data': x, 'filenames': [b'x.png'] * per_batch}, f)
        xs[name], ys[name] = x.reshape(-1, 3, 32, 32), y
    with open(d / 'batches.meta', 'wb') as f:
        pickle.dump({'label_names': ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                                     'truck'], 'num_cases_per_batch': per_batch, 'num_vis': 3072}, f)
    train = np.concatenate([xs[f'data_batch_{i}'] for i in range(1, 6)])
    return (train, sum((ys[f'data_batch_{i}'] for i in range(1, 6)), [])), (xs['test_batch'], ys['test_batch'])


def test_cifar_pickles(tmp_path):
    (train_x, train_y), (test_x, test_y) = _write_cifar(tmp_path)
    with pytest.warns(UserWarning, match='MD5'):
        ds = get_dataset('cifar10', 'train', root=tmp_path)
    assert len(ds) == 20 and ds.classes[0] == 'airplane'
    x, y = ds[7]
    assert x.dtype == torch.uint8 and torch.equal(x, torch.from_numpy(train_x[7])) and y == train_y[7]
    with pytest.warns(UserWarning, match='MD5'):
        x, y = load_tensors('cifar10', 'test', root=tmp_path)
    assert torch.equal(x, torch.from_numpy(test_x)) and y.tolist() == test_y
    with pytest.warns(UserWarning, match='MD5'):
        x, y = load_tensors('cifar10', 'unlabelled', root=tmp_path)
    assert y is None and len(x) == 20


def test_cifar_missing_or_broken(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / 'cifar-10-batches-py' / 'test_batch').unlink()
    with pytest.raises(DataError) as e: get_dataset('cifar10', 'test', root=tmp_path)
    msg = str(e.value)
    assert "missing ['cifar-10-batches-py/test_batch']" in msg and str(tmp_path) in msg and 'cifar.html' in msg
    with pytest.raises(DataError, match='root=None is not allowed'): get_dataset('cifar10', 'test')
    (tmp_path / 'cifar-10-batches-py' / 'test_batch').write_bytes(b'\x80\x04 truncated')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(DataError, match='unreadable'): get_dataset('cifar10', 'test', root=tmp_path)


@pytest.mark.parametrize('name,needs', [('svhn', 'train_32x32.mat'), ('imagenet', 'ILSVRC2012_devkit_t12.tar.gz'),
                                        ('inat2021', '2021_train'), ('inat2021-mini', '2021_train_mini'),
                                        ('flowers102', 'flowers-102/setid.mat'), ('cars', 'stanford_cars/cars_train/'),
                                        ('aircraft', 'fgvc-aircraft-2013b/data/images/'), ('cifar100', 'cifar-100-python/meta'),
                                        ('dogs', 'lists/train_list.mat'), ('nabirds', 'train_test_split.txt'),
                                        ('mit67', 'TrainImages.txt'), ('sports8', 'event_img')])
def test_missing_root_says_what_and_how(tmp_path, name, needs):
    with pytest.raises(DataError) as e: get_dataset(name, 'train', root=tmp_path)
    assert needs in str(e.value) and 'How to obtain it' in str(e.value), str(e.value)


# ---------------------------------------------------------------- class folders of PNGs, bad files

def _png(path: Path, value: int, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path)


def _tree(root: Path, classes=('cat', 'dog', 'emu'), per_class=4):
    for s in ('train', 'test'):
        for k, c in enumerate(classes):
            for i in range(per_class): _png(root / s / c / f'{i}.png', 10 * k + i)


def test_class_folder_tree(tmp_path):
    _tree(tmp_path)
    ds = get_dataset('folder', 'train', root=tmp_path)
    assert ds.classes == ('cat', 'dog', 'emu') and len(ds) == 12
    x, y = load_tensors('folder', 'test', root=tmp_path)
    assert x.shape == (12, 3, 12, 10) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert x[5, 0, 0, 0] == 11                                            # dog/1.png
    x, y = load_tensors('folder', 'unlabelled', root=tmp_path / 'train', image_size=8)
    assert x.shape == (12, 3, 8, 8) and y is None
    _png(tmp_path / 'flat' / 'a.png', 1); _png(tmp_path / 'flat' / 'b.png', 2)
    x, y = load_tensors('folder', 'unlabelled', root=tmp_path / 'flat')
    assert len(x) == 2 and y is None
    with pytest.raises(DataError, match='is unlabelled'): get_dataset('folder', 'train', root=tmp_path / 'flat')
    _png(tmp_path / 'mixed' / 'a.png', 1, (5, 5)); _png(tmp_path / 'mixed' / 'b.png', 2, (6, 5))
    with pytest.raises(DataError, match='pass image_size'): load_tensors('folder', 'unlabelled', root=tmp_path / 'mixed')


def test_bad_images_are_reported_skipped_counted_and_limited(tmp_path):
    _tree(tmp_path, per_class=10)
    bad = tmp_path / 'train' / 'dog' / '3.png'
    bad.write_bytes(b'\x89PNG broken')
    ds = get_dataset('folder', 'train', root=tmp_path, max_bad=0.05)      # 1 of 30 allowed
    with pytest.warns(UserWarning, match=str(bad)):
        x, y = ds[13]                                                     # dog/3.png -> the next image, dog/4.png
    assert y == 1 and x[0, 0, 0] == 14 and ds.bad and str(bad) in list(ds.bad.values())[0]
    with pytest.warns(UserWarning, match='skipping unreadable image'):
        x, y = load_tensors('folder', 'train', root=tmp_path, max_bad=0.05)
    assert len(x) == 29
    (tmp_path / 'train' / 'emu' / '0.png').write_bytes(b'')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(DataError, match=r'2 unreadable images of 30 exceed max_bad=0.05'):
            load_tensors('folder', 'train', root=tmp_path, max_bad=0.05)
        assert get_dataset('folder', 'train', root=tmp_path, max_bad=2).verify() == 2   # an absolute count


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='is empty'): get_dataset('folder', 'unlabelled', root=tmp_path / 'empty')
    with pytest.raises(DataError, match='is not a folder'): get_dataset('folder', 'train', root=tmp_path / 'nope')
    with pytest.raises(DataError, match='root=None'): get_dataset('folder', 'train')


# ---------------------------------------------------------------- split manifests and the named folder sets

def test_split_manifest(tmp_path):
    for i in range(6): _png(tmp_path / 'img' / f'{i}.png', i)
    data.write_manifest(tmp_path, [(f'img/{i}.png', 'ab'[i % 2], 'train' if i < 4 else 'test') for i in range(6)])
    x, y = load_tensors('folder', 'train', root=tmp_path)
    assert y.tolist() == [0, 1, 0, 1] and x[3, 0, 0, 0] == 3
    x, y = load_tensors('folder', 'test', root=tmp_path)
    assert y.tolist() == [0, 1] and x[0, 0, 0, 0] == 4
    assert len(load_tensors('folder', 'unlabelled', root=tmp_path)[0]) == 6   # every row, any split
    data.write_manifest(tmp_path, [(f'img/{i}.png', str(i), 'train') for i in range(6)])
    with pytest.raises(DataError, match='label=4 .* out of range: labels must be in 0..3'):
        get_dataset('folder', 'train', root=tmp_path, num_classes=4)
    with pytest.raises(DataError, match="split='test' has no rows"): get_dataset('folder', 'test', root=tmp_path)
    (tmp_path / MANIFEST).write_text('file,class\nimg/0.png,a\n')
    with pytest.raises(DataError, match='expected path,label,split'): get_dataset('folder', 'train', root=tmp_path)


def _cub(root: Path, labels=(1, 1, 2, 2, 3, 3)):
    imgs = [f'{l:03d}.cls/{i}.png' for i, l in enumerate(labels)]
    for i, p in enumerate(imgs): _png(root / 'images' / p, i)
    (root / 'images.txt').write_text(''.join(f'{i + 1} {p}\n' for i, p in enumerate(imgs)))
    (root / 'image_class_labels.txt').write_text(''.join(f'{i + 1} {l}\n' for i, l in enumerate(labels)))
    (root / 'train_test_split.txt').write_text(''.join(f'{i + 1} {int(i % 2 == 0)}\n' for i in range(len(imgs))))
    (root / 'classes.txt').write_text(''.join(f'{l} {l:03d}.cls\n' for l in sorted(set(labels))))


def test_cub_native_split_is_recorded(tmp_path):
    _cub(tmp_path)
    x, y = load_tensors('cub200', 'train', root=tmp_path)
    assert y.tolist() == [0, 1, 2] and x[:, 0, 0, 0].tolist() == [0, 2, 4]
    assert (tmp_path / MANIFEST).exists()                                 # the split is now fixed on disk
    x, y = load_tensors('cub200', 'test', root=tmp_path)
    assert y.tolist() == [0, 1, 2] and x[:, 0, 0, 0].tolist() == [1, 3, 5]
    bad = tmp_path / 'bad'
    _cub(bad, labels=(1, 201))
    with pytest.raises(DataError, match='label=201 .* out of range'): get_dataset('cub200', 'train', root=bad)


def test_mit67_and_sports8_layouts(tmp_path):
    m = tmp_path / 'mit'
    for c in ('bar', 'gym'):
        for i in range(3): _png(m / 'Images' / c / f'{i}.png', i)
    (m / 'TrainImages.txt').write_text('bar/0.png\nbar/1.png\ngym/0.png\ngym/1.png\n')
    (m / 'TestImages.txt').write_text('bar/2.png\ngym/2.png\n')
    x, y = load_tensors('mit67', 'test', root=m)
    assert y.tolist() == [0, 1] and x[:, 0, 0, 0].tolist() == [2, 2]
    s = tmp_path / 'sports'
    for c in ('polo', 'rowing'):
        for i in range(5): _png(s / 'event_img' / c / f'{i}.png', i)
    train = get_dataset('sports8', 'train', root=s)
    first = (s / MANIFEST).read_text()
    test = get_dataset('sports8', 'test', root=s)
    assert len(train) == 8 and len(test) == 2 and (s / MANIFEST).read_text() == first    # fixed and recorded
    assert not {p.name for p in train.paths if 'polo' in str(p)} & {p.name for p in test.paths if 'polo' in str(p)}
