"The study runner as a user drives it: an uninterrupted sweep, a sweep killed with SIGKILL and resumed, shards, SLURM (submitit's local executor)."
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pandas as pd
import pytest

from ssl_arch.preset import get_preset
from ssl_arch.results import read_results
from ssl_arch.study import Execution, is_done, run_study_a, study_a_units, units_left

SMOKE = get_preset('smoke')
QUIET = Execution(progress=False)
# The kNN probe: these tests are about sweeping, resuming and sharding, and the converged L-BFGS probe costs up to 20 s
# on a MobileNet's 1280 features (tests/test_paper_smoke.py and nbs/03_evaluate.ipynb run it).
PLAN = dict(n_resnet=1, n_mobilenet=1, sets=['tiny-objects', 'tiny-digits'], protocol='knn')
TIMING = ['features_s', 'probe_s', 'unit']  # wall-clock fields and bookkeeping differ between runs by nature


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in TIMING if c in table]).sort_values(['arch_id', 'eval_data', 'init']).reset_index(drop=True)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp('full')
    return root, run_study_a(root, SMOKE, run=QUIET, **PLAN)


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
        from ssl_arch.study import Execution, run_study_a
        run_study_a({str(tmp_path)!r}, get_preset('smoke'), run=Execution(progress=False), **{PLAN!r})
    """)
    proc = subprocess.Popen([sys.executable, '-c', script], start_new_session=True)
    units = study_a_units(SMOKE, **PLAN)
    deadline = time.time() + 300
    while not is_done(tmp_path, units[0]) and time.time() < deadline and proc.poll() is None: time.sleep(0.2)
    time.sleep(1.0)  # the next unit is now in flight
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert is_done(tmp_path, units[0]) and not all(is_done(tmp_path, u) for u in units)
    if (tmp_path / 'results.csv').exists(): read_results(tmp_path / 'results.csv')  # never half-written
    resumed = run_study_a(tmp_path, SMOKE, run=QUIET, **PLAN)
    assert comparable(resumed).equals(comparable(uninterrupted[1]))


def test_two_shards_one_through_submitit_equal_one_full_run(uninterrupted, tmp_path):
    first = run_study_a(tmp_path, SMOKE, run=Execution(shard='1/2', progress=False), **PLAN)
    assert 0 < len(first) < len(uninterrupted[1]) and units_left(tmp_path) == 2
    slurm = Execution(shard='2/2', executor='slurm', slurm={'cluster': 'local', 'timeout_min': 10}, progress=False)
    both = run_study_a(tmp_path, SMOKE, run=slurm, **PLAN)
    assert (tmp_path / 'submitit').is_dir()
    assert comparable(both).equals(comparable(uninterrupted[1]))


def test_submit_and_leave_then_a_rerun_gathers_what_finished(uninterrupted, tmp_path, capsys):
    leave = Execution(executor='slurm', slurm={'cluster': 'local', 'timeout_min': 10}, wait=False, progress=False)
    run_study_a(tmp_path, SMOKE, run=leave, **PLAN)                          # returns at once; the jobs run on
    jobs = json.loads((tmp_path / 'submitit' / 'jobs.json').read_text())
    assert len(jobs) == 2 and units_left(tmp_path) > 0                      # a job per architecture, not finished
    assert 'submitted 2 jobs (4 units)' in capsys.readouterr().out
    run_study_a(tmp_path, SMOKE, run=leave, **PLAN)                          # while they run: nothing submitted twice
    assert 'submitted 0 jobs' in capsys.readouterr().out
    assert json.loads((tmp_path / 'submitit' / 'jobs.json').read_text()) == jobs
    units, deadline = study_a_units(SMOKE, **PLAN), time.time() + 600
    while not all(is_done(tmp_path, u) for u in units) and time.time() < deadline: time.sleep(1)
    gathered = run_study_a(tmp_path, SMOKE, run=leave, **PLAN)               # the rerun once they have finished
    assert units_left(tmp_path) == 0 and comparable(gathered).equals(comparable(uninterrupted[1]))


def test_rerun_of_a_finished_study_does_no_work(uninterrupted):
    root, table = uninterrupted
    stamps = {p: p.stat().st_mtime for p in root.glob('units/*/DONE.json')}
    again = run_study_a(root, SMOKE, run=QUIET, **PLAN)
    assert {p: p.stat().st_mtime for p in root.glob('units/*/DONE.json')} == stamps
    assert comparable(again).equals(comparable(table))


def fake_slurm(bin_dir: Path, scripts: Path, state: str):
    "`srun`, `sbatch` (records each job script, answers a new job id) and `sacct` (every job in `state`) on PATH."
    bin_dir.mkdir(exist_ok=True)
    tools = dict(srun='import sys',
                 sbatch=f"import sys, os\nopen({str(scripts)!r}, 'a').write(open(sys.argv[-1]).read() + '\\n#END\\n')\n"
                        "print('Submitted batch job', 1000 + open(" + repr(str(scripts)) + ").read().count('#END'))",
                 sacct=f"import sys\nids = [a for i, a in enumerate(sys.argv) if sys.argv[i - 1] == '-j']\n"
                       f"print('JobID|State|NodeList'); [print(f'{{j}}|{state}|') for j in ids]")
    for name, code in tools.items():
        (bin_dir / name).write_text(f'#!{sys.executable}\n{code}\n'); (bin_dir / name).chmod(0o755)


def test_slurm_jobs_carry_every_option_and_a_rerun_resubmits_only_what_ended_undone(tmp_path, monkeypatch, capsys):
    from ssl_arch.study import slurm_parameters
    scripts = tmp_path / 'scripts.txt'
    fake_slurm(tmp_path / 'bin', scripts, 'PENDING')
    monkeypatch.setenv('PATH', f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    slurm = slurm_parameters('gpu', '1-00:00:00', account='lab', qos='high', constraint='a100', sbatch=['mail-type=END'],
                             setup=['module load cuda'])
    leave = Execution(executor='slurm', gpus_per_run=2, slurm=slurm, wait=False, progress=False)
    study = tmp_path / 'study'
    run_study_a(study, SMOKE, run=leave, **PLAN)                             # submitted, nothing computed here
    text = scripts.read_text()
    assert text.count('#END') == 2 and 'submitted 2 jobs (4 units) to slurm' in capsys.readouterr().out
    for line in ('--partition=gpu', '--time=1440', '--account=lab', '--qos=high', '--constraint=a100', '--mail-type=END',
                 '--gpus-per-node=2'):
        assert f'#SBATCH {line}\n' in text, line
    assert '\nmodule load cuda\n' in text
    assert sorted(j['job_id'] for j in json.loads((study / 'submitit' / 'jobs.json').read_text()).values()) == ['1001', '1002']
    run_study_a(study, SMOKE, run=leave, **PLAN)                             # queued: left alone
    assert 'submitted 0 jobs (0 units) to slurm; 2 still queued or running' in capsys.readouterr().out
    fake_slurm(tmp_path / 'bin', scripts, 'TIMEOUT')                         # ended without finishing their units
    run_study_a(study, SMOKE, run=leave, **PLAN)
    assert 'submitted 2 jobs (4 units) to slurm' in capsys.readouterr().out and scripts.read_text().count('#END') == 4
