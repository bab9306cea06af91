"""Tests of ssl_arch.supervised (table 4: supervised training from scratch) that are better outside the notebook:
the full `tiny` preset learns, runs repeat bitwise, papermill runs."""
import json
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


def test_the_command_writes_a_folder_with_its_record_and_tensorboard_log(tmp_path, capsys):
    from ssl_arch.cli import main
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    args = ['supervised', '--preset', 'smoke', '--arch', TINY, '--data', 'tiny-faces', '--epochs', '2', '--device', 'cpu']
    assert main([*args, '--out', str(tmp_path / 'sup')]) == 0
    out = capsys.readouterr().out
    assert 'epoch 1/2 loss' in out and 's left)' in out and f'{TINY} on tiny-faces: top1=' in out   # progress, then the result
    record, = json.loads((tmp_path / 'sup' / 'records.json').read_text())
    tb = EventAccumulator(str(tmp_path / 'sup' / 'tb')).Reload()
    assert [e.step for e in tb.Scalars('supervised/loss')] == [1, 2]
    assert tb.Scalars('supervised/top1')[-1].value == pytest.approx(record['top1'])
    assert main([*args, '--lr', '0.05', '--out', str(tmp_path / 'sup')]) == 2                        # another run's folder
    assert "holds the outputs of `ssl-arch supervised` for other values (lr: " in capsys.readouterr().err
