"""Tests of ssl_arch.supervised (table 4: supervised training from scratch) that are better outside the notebook:
the full `tiny` preset learns, runs repeat bitwise, bad requests are refused before any work, papermill runs."""
import json, re
from pathlib import Path

import pytest
import torch

from ssl_arch import datasets
from ssl_arch import supervised as sup
from ssl_arch.archs import get_spec
from ssl_arch.preset import get_preset

TINY = get_spec('resnet18').scaled(0.125).id   # resnet-basic-2222-w8-g1: about 0.18M parameters


@pytest.fixture(autouse=True)
def one_thread():
    "The test machine is shared: one torch thread is faster than two contending ones (and results are per thread count)."
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_tiny_preset_learns_far_above_chance():
    rec = sup.train_supervised(get_preset('tiny').supervised_config(TINY, 'tiny-textures', seed=0), device='cpu')
    chance = 100 / datasets.dataset_info('tiny-textures').num_classes   # 12.5%
    assert rec['top1'] > 3 * chance, rec
    assert rec['train_top1'] > 3 * chance and rec['final_loss'] < 1.5, rec
    assert (rec['epochs'], rec['batch_size'], rec['n_train'], rec['n_test']) == (12, 128, 1000, 1000)


def test_same_seed_same_result_other_seed_other_result():
    run = lambda seed: sup.fit_supervised(get_preset('smoke').supervised_config(TINY, 'tiny-faces', seed=seed, epochs=2), 'cpu')
    (m1, r1), (m2, r2), (_, r3) = run(3), run(3), run(4)
    assert (r1['top1'], r1['train_top1'], r1['final_loss']) == (r2['top1'], r2['train_top1'], r2['final_loss'])
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert r1['weights_hash'] == r2['weights_hash'] != r3['weights_hash']


@pytest.mark.parametrize('kwargs, message', [
    (dict(data='tiny-cats'), "data='tiny-cats' is not allowed: a labelled data set, one of tiny-objects"),
    (dict(data='folder'), "data='folder' is not allowed: a labelled data set"),
    (dict(epochs=0), "epochs=0 is not allowed: a positive integer"),
    (dict(epochs=2.5), "epochs=2.5 is not allowed: a positive integer"),
    (dict(batch_size=1), "batch_size=1 is not allowed: an integer >= 2"),
    (dict(batch_size=5000), "batch_size=5000 is not allowed: at most 1000, the training images of 'tiny-faces'"),
    (dict(lr=0.0), "lr=0.0 is not allowed: a positive finite number"),
    (dict(lr=float('inf')), "lr=inf is not allowed: a positive finite number"),
    (dict(arch='resnet-nonsense'), "id='resnet-nonsense' is not allowed: the form 'resnet-"),
])
def test_bad_requests_are_refused(kwargs, message):
    kw = {**dict(arch=TINY, data='tiny-faces'), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        sup.train_supervised(get_preset('tiny').supervised_config(**kw), device='cpu')


def test_unlabelled_only_data_set_is_refused(monkeypatch):
    real = datasets.dataset_info
    unlabelled = lambda name: (datasets.DatasetInfo('just-photos', 'pretraining', 0, 32, split_sizes={'unlabelled': 10})
                               if name == 'just-photos' else real(name))
    monkeypatch.setattr(datasets, 'dataset_info', unlabelled)
    monkeypatch.setattr(datasets, 'dataset_names', lambda embedded_only=True: ['just-photos'])
    with pytest.raises(sup.SupervisedError, match=r"data='just-photos' is not allowed: a data set with labelled 'train' "
                                                  r"and 'test' splits \(it has only \['unlabelled'\]\)"):
        sup.train_supervised(get_preset('smoke').supervised_config(TINY, 'just-photos'))


def test_bad_out_writes_nothing(tmp_path):
    with pytest.raises(sup.SupervisedError, match="out="):
        sup.supervised_run(get_preset('smoke').supervised_config(TINY, 'tiny-faces'), tmp_path / 'records.csv')
    assert list(tmp_path.iterdir()) == []


def test_supervised_notebook_runs_under_papermill(tmp_path):
    import papermill as pm
    nb = Path(__file__).resolve().parents[1] / 'nbs' / 'experiments' / 'supervised.ipynb'
    out = tmp_path / 'out' / 'records.json'
    pm.execute_notebook(str(nb), str(tmp_path / 'executed.ipynb'), kernel_name='python3', language='python',
                        progress_bar=False, parameters=dict(arch=TINY, data='tiny-faces', epochs=1, batch_size=16,
                                                            lr=0.1, seed=2, preset='smoke', out=str(out), device='cpu'))
    records = json.loads(out.read_text())
    assert len(records) == 1
    r = records[0]
    assert (r['arch_id'], r['eval_data'], r['init'], r['protocol'], r['seed'], r['epochs'], r['batch_size'], r['n_train']) == \
           (TINY, 'tiny-faces', 'supervised', 'supervised', 2, 1, 16, 64)
