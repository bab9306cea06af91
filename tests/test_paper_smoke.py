"""The paper preset's code path end to end on data in the real on-disk formats: `ssl-arch reproduce --preset
paper-smoke --data-root FIXTURES` (224 px, the ImageNet stem, LARS, loader workers; the smallest counts)."""
import json, os, subprocess, sys

import pandas as pd
import pytest

from ssl_arch.fixtures import write_cifar10, write_class_folders, write_imagenet, write_manifest_set
from ssl_arch.preset import get_preset
from ssl_arch.results import read_results

PRESET = get_preset('paper-smoke')


@pytest.fixture(scope='module')
def reproduced(tmp_path_factory):
    fx, out = tmp_path_factory.mktemp('fixtures'), tmp_path_factory.mktemp('reproduce')
    write_imagenet(fx / 'imagenet', n_classes=4, per_class_train=16, per_class_val=4)   # the fewest images its batches allow
    write_cifar10(fx / 'cifar10', per_class_train=4, per_class_test=2)
    write_manifest_set(fx / 'my-manifest', n_classes=3, per_class_train=6, per_class_test=3)
    write_class_folders(fx / 'my-folder', n_classes=3, per_class=6)
    r = subprocess.run([sys.executable, '-m', 'ssl_arch.cli', 'reproduce', '--preset', 'paper-smoke', '--data-root', str(fx),
                        '--out', str(out / 'runs'), '--figures', str(out / 'figures')],
                       capture_output=True, text=True, timeout=1500, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return fx, out / 'runs' / 'paper-smoke', out / 'figures'


def test_study_a_evaluated_every_model_on_every_form_of_data(reproduced):
    fx, root, _ = reproduced
    table = read_results(root / 'study_a' / 'results.csv')
    models = PRESET.resnet.n + PRESET.mobilenet.n
    assert set(table.eval_data) == set(PRESET.study_a.eval_sets)        # a registry set, a manifest, a folder
    assert len(table) == models * len(PRESET.study_a.eval_sets) * 2        # x (simclr, random init)
    assert (table.stem == 'imagenet').all() and table.data_fingerprint.str.len().eq(16).all()
    assert table.data_location.map(lambda p: p.startswith(str(fx))).all()


def test_study_b_searched_pretrained_and_trained_from_files(reproduced):
    _, root, _ = reproduced
    table = read_results(root / 'study_b' / 'results.csv')
    assert {'searched', 'random_search', 'baseline'} <= set(table.role)
    assert set(table[table.role == 'searched'].searched_on) == set(PRESET.study_b.search_corpora)
    assert (table.protocol == 'supervised').any() and (table.stem == 'imagenet').all()


def test_the_figures_were_written(reproduced):
    *_, figures = reproduced
    assert (figures / 'README.md').exists() and {'fig1', 'fig2', 'fig7'} <= {p.name.split('_')[0] for p in figures.glob('fig*')}
