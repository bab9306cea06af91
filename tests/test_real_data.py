"""Real data as a user names it: registry sets under --data-root, folder:PATH and manifests, streamed from files
with bounded memory, every bad input refused in one line before anything is written."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_arch.fixtures import write_bad_images, write_fixtures
from ssl_arch.preset import get_preset
from ssl_arch.sources import open_data
from ssl_arch.study import baseline_spec

CLI = [sys.executable, '-m', 'ssl_arch.cli']
ARCH = baseline_spec('resnet18', get_preset('smoke')).id          # small: the data path is what is tested
FAST = ['--preset', 'paper-smoke', '--arch', ARCH, '--epochs', '1', '--batch-size', '8', '--max-images', '16',
        '--image-size', '64', '--stem', 'imagenet', '--knn-every', '0', '--workers', '1']


def cli(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})


@pytest.fixture(scope='module')
def fx(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('fixtures')
    write_fixtures(root)
    return root


@pytest.fixture(scope='module')
def run(fx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('runs') / 'imagenet-run'
    r = cli('pretrain', *FAST, '--data', 'imagenet', '--data-root', fx, '--out', out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_a_registry_set_under_the_data_root_pretrains_from_files(run, fx):
    m = json.loads((run / 'metrics.json').read_text())
    assert m['images'] == 16 and m['image_size'] == 64 and not m['small_images']   # the ImageNet stem, as asked
    assert m['data']['location'] == str(fx / 'imagenet') and m['data']['files'] > 100 and len(m['data']['fingerprint']) == 16


@pytest.mark.parametrize('data', ['cifar10', 'my-manifest/split_manifest.csv', 'folder:my-folder'])
def test_every_form_of_data_probes_and_records_its_fingerprint(run, fx, data, tmp_path):
    out = tmp_path / 'probe'
    r = cli('probe', '--checkpoint', run, '--data', data, '--data-root', fx, '--out', out, '--workers', '0')
    assert r.returncode == 0, r.stderr[-2000:]
    rec, = json.loads((out / 'records.json').read_text())
    assert next((out / 'tb').glob('events.out.tfevents.*')).stat().st_size > 0      # its TensorBoard log beside it
    assert rec['eval_data'] == data and rec['n_test'] > 0 and 0 <= rec['top1'] <= 100
    assert Path(rec['data_location']).exists() and len(rec['data_fingerprint']) == 16


def test_a_folder_without_train_and_test_is_split_once_never_evaluated_on_training_images(fx):
    train, test = (open_data('folder:my-folder', s, fx) for s in ('train', 'test'))
    assert not set(train.paths) & set(test.paths) and len(train) + len(test) == len(open_data('folder:my-folder', 'unlabelled', fx))
    assert sorted(set(test.labels)) == sorted(set(train.labels))                       # stratified: every class in both


def _refused(tmp_path, *args, says: str):
    out = tmp_path / 'out'
    r = cli(*args, '--out', out)
    assert r.returncode != 0 and says in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr          # one line, no traceback
    assert not out.exists()                                            # nothing written


def test_a_missing_set_says_where_and_what_and_whether_download_helps(tmp_path):
    _refused(tmp_path, 'pretrain', *FAST, '--data', 'cifar10', '--data-root', tmp_path,
             says=f"data='cifar10' is not under {tmp_path}/cifar10: expected there cifar-10-batches-py/data_batch_1")
    _refused(tmp_path, 'pretrain', *FAST, '--data', 'imagenet', '--data-root', tmp_path, says='--download cannot fetch it')


def test_bad_folders_and_manifests_are_refused_in_one_line(tmp_path):
    (tmp_path / 'empty').mkdir()
    _refused(tmp_path, 'pretrain', *FAST, '--data', f'folder:{tmp_path / "empty"}', says='is empty')
    mixed = tmp_path / 'mixed'
    for p in ('a/0.png', 'a/1.png', 'loose.png'):
        (mixed / p).parent.mkdir(parents=True, exist_ok=True); Image.new('RGB', (8, 8)).save(mixed / p)
    _refused(tmp_path, 'pretrain', *FAST, '--data', f'folder:{mixed}', says='mixes 1 loose images with 2 in sub-folders')
    (tmp_path / 'm.csv').write_text('path,label,split\nmixed/a/0.png,a,train\nnope.png,a,train\n')
    _refused(tmp_path, 'pretrain', *FAST, '--data', tmp_path / 'm.csv', says='names 1 missing files')
    (tmp_path / 'v.csv').write_text('path,label,split\nmixed/a/0.png,a,val\n')
    _refused(tmp_path, 'pretrain', *FAST, '--data', tmp_path / 'v.csv', says="split='val' in")


def test_a_set_smaller_than_the_batch_is_refused_before_any_step(fx, tmp_path):
    _refused(tmp_path, 'pretrain', *[a if a != '16' else '4' for a in FAST], '--data', 'folder:my-folder',
             '--data-root', fx, '--batch-size', '8', says='batch_size=8 is not allowed: at most 4')


def test_unreadable_images_are_counted_skipped_and_stop_the_run_past_the_threshold(tmp_path):
    good = tmp_path / 'imgs'
    good.mkdir()
    for i in range(20): Image.new('RGB', (16, 12), (i, 0, 0)).save(good / f'{i}.png')
    write_bad_images(good, kinds=('truncated',))
    ds = open_data(f'folder:{good}', 'unlabelled', max_bad=2)
    with pytest.warns(UserWarning, match='skipping unreadable image'):
        assert ds.verify() == 1                                                  # counted, named, skipped
    write_bad_images(good, kinds=('not_an_image', 'empty'))
    with pytest.raises(ValueError, match=r'3 unreadable images of 23 exceed max_bad=2'):
        with pytest.warns(UserWarning): open_data(f'folder:{good}', 'unlabelled', max_bad=2).verify()


def test_streaming_never_loads_a_split_whole_and_the_cache_is_memory_mapped(fx, tmp_path, monkeypatch):
    import ssl_arch.data as data
    from ssl_arch.evaluate import FeatureCache, cached_features, random_init_backbone
    from ssl_arch.simclr import pretrain
    def whole(*a, **k): raise AssertionError('a split was loaded whole into memory')
    monkeypatch.setattr(data, 'load_tensors', whole)
    cfg = get_preset('paper-smoke').pretrain_config(ARCH, 'imagenet', epochs=1, batch_size=8, max_images=16, image_size=64,
                                                    knn_every=0, data_root=str(fx), workers=0)
    assert pretrain(cfg, tmp_path / 'run', progress=False)['images'] == 16
    net = random_init_backbone(ARCH, small_images=False)
    cache = FeatureCache(tmp_path / 'cache', 'k', net.feature_dim)
    modes, load = [], np.load
    monkeypatch.setattr(np, 'load', lambda f, *a, **k: modes.append(k.get('mmap_mode')) or load(f, *a, **k))
    feats, labels = cached_features(net, 'cifar10', 'test', cache, image_size=32, root=fx, workers=0)
    assert len(feats) == len(labels) == 50 and 'c' in modes                        # features read back memory-mapped


def test_the_loader_workers_change_nothing(fx, tmp_path):
    from ssl_arch.simclr import pretrain
    cfg = lambda w: get_preset('paper-smoke').pretrain_config(ARCH, 'imagenet', epochs=1, batch_size=8, max_images=16,
                                                              image_size=64, knn_every=0, data_root=str(fx), workers=w)
    a, b = (pretrain(cfg(w), tmp_path / f'w{w}', progress=False)['history'][0]['loss'] for w in (0, 2))
    assert a == b


def test_a_search_streams_the_inat_layout(fx, tmp_path):
    r = cli('search', '--preset', 'paper-smoke', '--data', 'inat2021-mini', '--data-root', fx, '--out', tmp_path / 's',
            '--image-size', '64', '--workers', '1', '--search-epochs', '1')
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / 's' / 'search.json').read_text())['finished']
    assert (tmp_path / 's' / 'arch.json').exists()
