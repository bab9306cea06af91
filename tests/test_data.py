"""The one entry point for data: unknown names and splits refused, and the real on-disk formats (CIFAR pickles, class
folders of PNGs, split manifests, CUB/MIT-67 and Sports8 layouts), with every bad-input case."""
import pickle, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_arch import data
from ssl_arch.data import get_dataset, load_corpus, load_tensors, MANIFEST
from ssl_arch.datasets import DataError


def test_unknown_names_and_splits_are_refused():
    with pytest.raises(DataError, match="name='tiny-imagenet' is not allowed"): get_dataset('tiny-imagenet', 'train')
    with pytest.raises(DataError, match="split='unlabelled' is not allowed"): load_tensors('tiny-digits', 'unlabelled')
    with pytest.raises(DataError, match="split='val' is not allowed"): load_tensors('tiny-objects', 'val')
    with pytest.raises(DataError, match="data='imagenet-99' is not allowed: one of tiny-objects, "):
        load_corpus('imagenet-99')


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
