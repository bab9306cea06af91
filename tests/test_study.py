"The study runner as a user drives it: an uninterrupted sweep, a sweep killed with SIGKILL and resumed, shards, SLURM (submitit's local executor), refusals."
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pandas as pd
import pytest

from ssl_arch.preset import get_preset
from ssl_arch.results import read_results
from ssl_arch.study import StudyError, run_study_a, study_a_units, is_done, parse_shard

SMOKE = get_preset('smoke')
PLAN = dict(n_resnet=1, n_mobilenet=1, sets=['tiny-objects', 'tiny-digits'])
TIMING = ['features_s', 'probe_s', 'unit']  # wall-clock fields and bookkeeping differ between runs by nature


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in TIMING if c in table]).sort_values(['arch_id', 'eval_data', 'init']).reset_index(drop=True)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp('full')
    return root, run_study_a(root, SMOKE, progress=False, **PLAN)


def test_uninterrupted_sweep_writes_one_tidy_table(uninterrupted):
    root, table = uninterrupted
    assert len(table) == 2 * 2 * 2  # 2 architectures x 2 data sets x (simclr, random)
    expected = {'arch_id', 'family', 'params', 'params_with_classifier', 'flops', 'top_bottom_ratio', 'pretrain_data',
                'eval_data', 'protocol', 'init', 'seed', 'epochs', 'top1', 'config_hash', 'ssl_arch_version',
                'torch_version', 'preset', 'results_format'}
    assert expected <= set(table.columns)
    assert comparable(read_results(root / 'results.csv')).equals(comparable(table))
    assert len(list((root / 'notebooks').glob('*.ipynb'))) == 4  # every unit's executed notebook is kept
    assert json.loads((root / 'meta.json').read_text())['units_done'] == 4


def test_kill_9_mid_sweep_then_resume_gives_the_same_results(uninterrupted, tmp_path):
    script = textwrap.dedent(f"""
        from ssl_arch.preset import get_preset
        from ssl_arch.study import run_study_a
        run_study_a({str(tmp_path)!r}, get_preset('smoke'), progress=False, **{PLAN!r})
    """)
    proc = subprocess.Popen([sys.executable, '-c', script], start_new_session=True)
    units = study_a_units(SMOKE, **PLAN)
    deadline = time.time() + 300
    while not is_done(tmp_path, units[0]) and time.time() < deadline and proc.poll() is None: time.sleep(0.2)
    time.sleep(1.0)  # the next unit is now in flight
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert is_done(tmp_path, units[0]) and not all(is_done(tmp_path, u) for u in units)
    if (tmp_path / 'results.csv').exists(): read_results(tmp_path / 'results.csv')  # never half-written
    resumed = run_study_a(tmp_path, SMOKE, progress=False, **PLAN)
    assert comparable(resumed).equals(comparable(uninterrupted[1]))


def test_two_shards_one_through_submitit_equal_one_full_run(uninterrupted, tmp_path):
    first = run_study_a(tmp_path, SMOKE, shard='1/2', progress=False, **PLAN)
    assert 0 < len(first) < len(uninterrupted[1])
    both = run_study_a(tmp_path, SMOKE, shard='2/2', executor='slurm', slurm={'cluster': 'local', 'timeout_min': 10},
                       progress=False, **PLAN)
    assert (tmp_path / 'submitit').is_dir()
    assert comparable(both).equals(comparable(uninterrupted[1]))


def test_rerun_of_a_finished_study_does_no_work(uninterrupted):
    root, table = uninterrupted
    stamps = {p: p.stat().st_mtime for p in root.glob('units/*/DONE.json')}
    again = run_study_a(root, SMOKE, progress=False, **PLAN)
    assert {p: p.stat().st_mtime for p in root.glob('units/*/DONE.json')} == stamps
    assert comparable(again).equals(comparable(table))


@pytest.mark.parametrize('call, message', [
    (lambda: parse_shard('3/2'), "shard='3/2' is not allowed"),
    (lambda: study_a_units(SMOKE, corpus='tiny-digits'), "corpus='tiny-digits' is not allowed"),
    (lambda: run_study_a('/tmp/never', SMOKE, executor='kubernetes', **PLAN), "executor='kubernetes' is not allowed"),
    (lambda: __import__('ssl_arch.cli', fromlist=['study']).study(study='c'), "study='c' is not allowed: 'a' or 'b'"),
    (lambda: __import__('ssl_arch.study', fromlist=['search_unit']).search_unit('tiny-objects', SMOKE, 0, 'grid'),
     "method='grid' is not allowed"),
])
def test_refusals(call, message):
    with pytest.raises(StudyError, match=None) as e: call()
    assert message in str(e.value)


def _fake_sweep(monkeypatch, fail: str | None = None):
    "`run_unit` replaced by one that logs starts and ends (and fails on the unit named `fail`)."
    import threading
    from ssl_arch import study
    log, lock = [], threading.Lock()
    def fake_run_unit(root, unit, gpus_per_run=1):
        with lock: log.append(('start', unit.name))
        time.sleep(0.05 if unit.name.endswith('pre') else 0.01)
        if unit.name == fail: raise RuntimeError(f'{unit.name} failed')
        with lock: log.append(('end', unit.name))
        return 0.0
    monkeypatch.setattr(study, 'run_unit', fake_run_unit)
    return log


def test_local_runner_schedules_units_after_what_they_need_and_adds_replanned_ones(monkeypatch, tmp_path):
    from ssl_arch.study import Unit, _run_local
    log = _fake_sweep(monkeypatch)
    units = [Unit('a-pre', 'pretrain', {}, 'a'), Unit('a-eval', 'linear_eval', {}, 'a', after='a-pre'),
             Unit('b-pre', 'pretrain', {}, 'b'), Unit('b-eval', 'linear_eval', {}, 'b', after='b-pre')]
    extra = Unit('c-pre', 'pretrain', {}, 'c')  # what a search found: planned once 'a-pre' is done
    replan = lambda: units + ([extra] if ('end', 'a-pre') in log else [])
    planned = _run_local(tmp_path, list(units), list(units), 'smoke', 1, jobs=2, progress=False, replan=replan)
    ends = [n for e, n in log if e == 'end']
    assert sorted(ends) == ['a-eval', 'a-pre', 'b-eval', 'b-pre', 'c-pre'] and planned[-1] == extra
    for name in ('a', 'b'):  # an evaluation starts only after its pretraining ended
        assert log.index(('end', f'{name}-pre')) < log.index(('start', f'{name}-eval'))
    assert log.index(('start', 'b-pre')) < log.index(('end', 'a-pre'))  # two at a time: both pretrainings together


def test_local_runner_stops_new_starts_after_a_failure_and_raises_it(monkeypatch, tmp_path):
    from ssl_arch.study import Unit, _run_local
    log = _fake_sweep(monkeypatch, fail='a-pre')
    units = [Unit('a-pre', 'pretrain', {}, 'a'), Unit('a-eval', 'linear_eval', {}, 'a', after='a-pre'),
             Unit('b-pre', 'pretrain', {}, 'b'), Unit('b-eval', 'linear_eval', {}, 'b', after='b-pre')]
    with pytest.raises(RuntimeError, match='a-pre failed'):
        _run_local(tmp_path, list(units), list(units), 'smoke', 1, jobs=1, progress=False)
    assert log == [('start', 'a-pre')]  # one at a time: nothing started after the failure
