"The study runner as a user drives it: an uninterrupted sweep, a sweep killed with SIGKILL and resumed, shards, SLURM (submitit's local executor)."
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pandas as pd
import pytest

from ssl_arch.preset import get_preset
from ssl_arch.results import read_results
from ssl_arch.study import run_study_a, study_a_units, is_done

SMOKE = get_preset('smoke')
# The kNN probe: these tests are about sweeping, resuming and sharding, and the converged L-BFGS probe costs up to 20 s
# on a MobileNet's 1280 features (tests/test_paper_smoke.py and nbs/03_evaluate.ipynb run it).
PLAN = dict(n_resnet=1, n_mobilenet=1, sets=['tiny-objects', 'tiny-digits'], protocol='knn')
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
