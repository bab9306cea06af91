"""A clumsy or hostile user, through the command line: nothing a user owns is lost, nothing wrong passes as success, and
every refusal is one line naming the option. One test per class of problem; the notebooks test the rules themselves
(`ssl_arch.outputs`, `ssl_arch.simclr.check_learned`, `ssl_arch.study.check_parameters`, ...)."""
import contextlib, errno, io, json, os, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest

from ssl_arch.cli import main
from ssl_arch.figures import write_synthetic_results
from ssl_arch.outputs import LOCK, folder_lock
from ssl_arch.preset import get_preset
from ssl_arch.study import study_a_units

RESNET, MOBILENET = 'resnet-basic-2222-w8-g1', 'mbv2-w0.0625-4634333'   # smoke-sized models
SMOKE = ['--preset', 'smoke', '--data', 'tiny-objects', '--knn-every', '0', '--no-progress']


def cli(*args, timeout=300, **kw):
    "`ssl-arch ARGS` in a new process (one torch thread): (status, stdout, stderr)."
    env = dict(os.environ, OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-m', 'ssl_arch.cli', *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env, **kw)
    return r.returncode, r.stdout, r.stderr


def start(*args):
    "`ssl-arch ARGS` started in the background."
    return subprocess.Popen([sys.executable, '-m', 'ssl_arch.cli', *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'),
                            # a job started in the background by a shell inherits SIGINT ignored: Ctrl-C must reach it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def in_process(*args):
    "`ssl-arch ARGS` through `main` in this process: (status, stderr)."
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()): status = main([str(a) for a in args])
    return status, err.getvalue()


def one_line(stderr: str, *parts: str):
    "The error is one line (no traceback; a progress bar or a library's warning may come before it) holding every part."
    lines = [l for l in stderr.splitlines() if l.startswith('ssl-arch ')]
    assert len(lines) == 1 and 'Traceback' not in stderr and stderr.strip().endswith(lines[0]), stderr[-3000:]
    for p in parts: assert p in lines[0], (p, lines[0])


def wait_for(path: Path, seconds: float = 120):
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < seconds, f'{path} did not appear'
        time.sleep(0.2)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "A finished one-epoch smoke pretraining."
    out = tmp_path_factory.mktemp('run') / 'run'
    status, _, err = cli('pretrain', *SMOKE, '--arch', RESNET, '--epochs', '1', '--max-images', '64', '--out', out)
    assert status == 0, err
    return out


def unwritable(tmp_path: Path) -> Path:
    "A folder this process cannot write in (a read-only folder; for root, who ignores permissions, sysfs)."
    if os.geteuid() == 0: return Path('/sys/ssl_arch_test')
    d = tmp_path / 'read-only'; d.mkdir(); d.chmod(0o555)
    return d


# Data lost: a command writes only what it owns, never into its inputs, one writer at a time

def test_figures_never_touch_a_folder_they_did_not_make(tmp_path, monkeypatch):
    results = write_synthetic_results(tmp_path / 'results', n_per_family=4)
    mine = tmp_path / 'mine'; mine.mkdir()
    (mine / 'README.md').write_text('my notes'); (mine / 'fig1_holiday.png').write_bytes(b'my photo')
    status, err = in_process('figures', '--results', results, '--out', mine)
    assert status == 2; one_line(err, f"out={str(mine)!r} is not allowed", 'it holds other files')
    assert (mine / 'README.md').read_text() == 'my notes' and (mine / 'fig1_holiday.png').read_bytes() == b'my photo'
    monkeypatch.chdir(mine)
    for out in ('.', ''):
        status, err = in_process('figures', '--results', results, '--out', out)
        assert status == 2; one_line(err, f"out={out!r} is not allowed")
    assert sorted(p.name for p in mine.iterdir()) == ['README.md', 'fig1_holiday.png']


def test_probe_never_writes_over_the_run_it_reads(run, tmp_path):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for target in (run / 'checkpoint.pt', run / 'metrics.json', run / 'probe.json', run):
        status, err = in_process('probe', '--checkpoint', run, '--data', 'tiny-digits', '--out', target,
                                 '--cache-dir', tmp_path / 'cache')
        assert status == 2; one_line(err, f"out={str(target)!r} is not allowed")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert not (tmp_path / 'cache').exists()                                   # refused before any feature was computed


def test_two_pretrainings_into_one_folder(tmp_path):
    out, long = tmp_path / 'run', ['--epochs', '200', '--max-images', '64']
    first = start('pretrain', *SMOKE, '--arch', RESNET, *long, '--out', out)
    try:
        wait_for(out / 'config.json')
        status, err = in_process('pretrain', *SMOKE, '--arch', RESNET, *long, '--out', out)             # the same run
        assert status == 2; one_line(err, 'another command is writing it', f'(pid {first.pid} on host')
        status, err = in_process('pretrain', *SMOKE, '--arch', RESNET, *long, '--lr', '0.1', '--out', out)   # another run
        assert status == 2; one_line(err, 'holds a different run (lr: 0.3 there, 0.1 here)')
        assert len(list((out / 'tb').glob('events.*'))) == 1                   # one writer, one TensorBoard log
    finally:
        first.send_signal(signal.SIGKILL); first.wait()
    assert json.loads((out / LOCK).read_text())['pid'] == first.pid              # killed: its lock is free again
    with folder_lock(out): pass


def test_search_into_another_data_sets_search(tmp_path):
    out = tmp_path / 'search'
    status, _, err = cli('search', '--preset', 'smoke', '--data', 'tiny-objects', '--out', out)
    assert status == 0, err
    assert json.loads((out / 'search.json').read_text())['data'] == 'tiny-objects'
    arch = (out / 'arch.json').read_text()
    status, err = in_process('search', '--preset', 'smoke', '--data', 'tiny-species-mini', '--out', out)
    assert status == 2; one_line(err, "data: 'tiny-objects' there, 'tiny-species-mini' here")
    assert (out / 'arch.json').read_text() == arch


# Wrong results passed as success

def test_a_run_that_collapsed_to_chance_is_an_error(tmp_path):
    out = tmp_path / 'run'
    status, _, err = cli('pretrain', *SMOKE, '--arch', MOBILENET, '--epochs', '1', '--max-images', '256', '--lr', '1e6', '--out', out)
    assert status == 2; one_line(err, 'collapsed: its loss sat at chance, ln(2x32-1) = 4.1431', 'lower lr=1000000.0')
    assert json.loads((out / 'metrics.json').read_text())['history'][-1]['collapsed'] is True   # recorded, and
    status, err = in_process('pretrain', *SMOKE, '--arch', MOBILENET, '--epochs', '1', '--max-images', '256', '--lr', '1e6', '--out', out)
    assert status == 2 and 'collapsed' in err                                   # a rerun of the finished run says it again


def test_a_search_that_learned_nothing_is_an_error(tmp_path):
    out = tmp_path / 'search'
    status, _, err = cli('search', '--preset', 'smoke', '--data', 'tiny-objects', '--weight-lr', '1e6', '--arch-lr', '1e6',
                         '--out', out)
    assert status == 2; one_line(err, 'ssl-arch search: error: the search', 'weight_lr=1000000.0')
    assert not (out / 'arch.json').exists() and 'error' in json.loads((out / 'search.json').read_text())


def test_figures_refuse_what_they_cannot_make_and_write_nothing(tmp_path):
    results = write_synthetic_results(tmp_path / 'results', study_b=False, n_per_family=4)
    table = results / 'study_a' / 'results.csv'
    cases = [(['--results', results, '--method', 'spline'], "method='spline' is not allowed"),
             (['--results', tmp_path, '--method', 'ols'], 'it has neither')]          # the wrong folder
    for fmt, why in (('ssl_arch.results/0', "results_format='ssl_arch.results/0' is not allowed"), (None, "results_format='(none)'")):
        text = write_synthetic_results(tmp_path / 'r2', study_b=False, n_per_family=4) / 'study_a' / 'results.csv'
        rows = text.read_text().replace('ssl_arch.results/1', fmt) if fmt else \
            pd.read_csv(text).drop(columns='results_format').to_csv(index=False)    # no format column at all
        bad = tmp_path / f'bad-{fmt}' / 'study_a'; bad.mkdir(parents=True); (bad / 'results.csv').write_text(rows)
        cases.append((['--results', bad.parent], why))
    assert table.exists()
    for args, why in cases:
        status, err = in_process('figures', *args, '--out', tmp_path / 'figures')
        assert status == 2; one_line(err, why)
        assert not (tmp_path / 'figures').exists()


def test_papermill_refuses_an_unknown_parameter(tmp_path):
    nb = Path(__file__).resolve().parents[1] / 'nbs' / 'experiments' / 'supervised.ipynb'
    r = subprocess.run([sys.executable, '-m', 'papermill', str(nb), str(tmp_path / 'x.ipynb'), '-k', 'python3',
                        '-p', 'epoch', '1', '-p', 'out', str(tmp_path / 'r.json')], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "parameter='epoch' is not allowed: one of this notebook's parameters: arch, data, epochs" in r.stderr
    assert not (tmp_path / 'r.json').exists()                                  # refused before training


# Tracebacks where a sentence is owed

@pytest.mark.parametrize('command', [
    ['pretrain', '--preset', 'smoke', '--arch', RESNET, '--data', 'tiny-objects', '--out', '{out}'],
    ['probe', '--checkpoint', '{run}', '--data', 'tiny-digits', '--out', '{out}/p'],
    ['search', '--preset', 'smoke', '--data', 'tiny-objects', '--out', '{out}'],
    ['random-search', '--preset', 'smoke', '--data', 'tiny-objects', '--out', '{out}'],
    ['supervised', '--preset', 'smoke', '--arch', RESNET, '--data', 'tiny-faces', '--out', '{out}/r'],
    ['study', '--preset', 'smoke', '--out', '{out}'],
    ['figures', '--results', '{results}', '--out', '{out}'],
    ['reproduce', '--preset', 'smoke', '--out', '{out}'],
    ['data', 'build', '--root', '{out}'],
], ids=lambda c: c[0] if c[0] != 'data' else 'data-build')
def test_every_command_refuses_an_unwritable_or_impossible_output_before_compute(command, run, tmp_path):
    results = write_synthetic_results(tmp_path / 'results', study_b=False, n_per_family=4) if command[0] == 'figures' else ''
    (tmp_path / 'file').write_text('mine')
    for out, why in ((unwritable(tmp_path) / 'out', 'is not writable'), (tmp_path / 'file' / 'out', 'file is a file'),
                     (tmp_path / 'file', 'is a file')):
        args = [a.format(out=out, run=run, results=results) for a in command]
        t0 = time.time()
        status, err = in_process(*args)
        assert status == 2; one_line(err, 'is not allowed', why)
        assert time.time() - t0 < 20, 'checked after the compute'
    assert (tmp_path / 'file').read_text() == 'mine'


def test_a_nan_loss_is_one_line(tmp_path):
    status, _, err = cli('pretrain', *SMOKE, '--arch', 'resnet-bottleneck-3342-w6-g1', '--epochs', '2', '--max-images', '256',
                         '--lr', '1e6', '--out', tmp_path / 'run')
    assert status == 2; one_line(err, 'loss=nan at step', 'the last good checkpoint stays', 'lower lr=1000000.0')


def test_ctrl_c_is_one_line_and_status_130(tmp_path):
    p = start('pretrain', *SMOKE, '--arch', RESNET, '--epochs', '200', '--max-images', '64', '--out', tmp_path / 'run')
    wait_for(tmp_path / 'run' / 'checkpoint.pt')                              # training, an epoch saved
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130; one_line(err, 'ssl-arch pretrain: interrupted (Ctrl-C)')


def test_a_full_disk_is_one_line(tmp_path, monkeypatch):
    results = write_synthetic_results(tmp_path / 'results', study_b=False, n_per_family=4)
    def full(fd): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, 'fsync', full)
    status, err = in_process('figures', '--results', results, '--out', tmp_path / 'figures')
    assert status == 1; one_line(err, 'ssl-arch figures: error: No space left on device', 'free some space')


def test_study_options_are_checked_before_any_unit(tmp_path):
    for args, why in ((['--protocol', 'svm'], "protocol='svm' is not allowed"), (['--seed', '-5'], 'seed=-5 is not allowed'),
                      (['--shard', ''], "shard='' is not allowed")):
        status, err = in_process('study', '--preset', 'smoke', '--out', tmp_path / 'study', *args)
        assert status == 2; one_line(err, why)
        assert not (tmp_path / 'study').exists()


def test_a_unit_folder_from_another_version_is_one_line(tmp_path):
    study, first = tmp_path / 'study', study_a_units(get_preset('smoke'), 0, n_resnet=1, n_mobilenet=1)[0]
    unit = first.name
    (study / 'units' / unit / 'run').mkdir(parents=True)                       # its run folder, from an older plan
    (study / 'units' / unit / 'run' / 'config.json').write_text(json.dumps({**first.parameters['config'], 'epochs': 99}))
    status, _, err = cli('study', '--preset', 'smoke', '--out', study, '--n-resnet', '1', '--n-mobilenet', '1')
    assert status == 2; one_line(err, f"unit='{unit}' failed: PretrainError", 'move it away to recompute the unit')
