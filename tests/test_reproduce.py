"The main job end to end on the smoke preset, through the same code path as `make reproduce` (`ssl-arch reproduce`)."
import json, re, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope='module')
def reproduced(tmp_path_factory):
    """The smoke preset through a user's preset file that changes two fields: one pretraining epoch instead of two, and the
    kNN probe. The converged L-BFGS probe costs up to 20 s on a MobileNet's 1280 features (tests/test_paper_smoke.py and
    nbs/03_evaluate.ipynb run it); what this file tests is the reproduction around the probe."""
    root = tmp_path_factory.mktemp('reproduce')
    (root / 'smoke-short.toml').write_text('base = "smoke"\nprobe = "knn"\n[pretrain]\nepochs = 1\n')
    t0 = time.time()
    r = subprocess.run([sys.executable, '-c', 'import sys; from ssl_arch.cli import main; sys.exit(main())', 'reproduce',
                        '--preset', str(root / 'smoke-short.toml'), '--out', str(root / 'runs'), '--figures', str(root / 'figures')],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root / 'runs' / 'smoke-short', root / 'figures', time.time() - t0, r.stdout


def test_the_preset_file_changed_two_fields_and_kept_the_rest(reproduced):
    runs, _, _, _ = reproduced
    preset = json.loads((runs / 'preset.json').read_text())
    assert preset['name'] == 'smoke-short' and preset['pretrain']['epochs'] == 1 and preset['probe'] == 'knn'
    smoke = __import__('ssl_arch.preset', fromlist=['get_preset']).get_preset('smoke')
    assert preset['pretrain']['batch_size'] == smoke.pretrain.batch_size and preset['resnet']['n'] == smoke.resnet.n
    a = pd.read_csv(runs / 'study_a' / 'results.csv')
    assert set(a[a.init == 'simclr'].epochs) == {1} and set(a.preset) == {'smoke-short'} and set(a.protocol) == {'knn'}


def test_stages_and_time_are_reported(reproduced):
    _, _, seconds, out = reproduced
    assert '[1/3] study A' in out and '[2/3] study B' in out and '[3/3] figures' in out and 'done in' in out
    assert re.search(r'^finished a-eval-\S+ in \d+ s$', out, re.M)  # one line per finished unit
    print(f"smoke reproduction: {seconds:.0f} s")


EXPECTED = ['README.md', 'fig1_correlation_resnet.png', 'fig1_correlation_mobilenet.svg', 'fig2_pretrain_vs_downstream.png',
            'fig3_params_vs_accuracy.png', 'fig4_top_bottom_ratio.png', 'fig5_samples.png', 'fig7_searched_architectures.png',
            'fig12_correlation_resnet.csv', 'fig13_correlation_mobilenet.csv', 'table1_searched_vs_handcrafted.md',
            'table2_transfer.csv', 'table4_supervised.md', 'table5_datasets.md', 'check_search_vs_random.md']


def test_every_expected_file_is_written(reproduced):
    _, figures, _, _ = reproduced
    missing = [f for f in EXPECTED if not (figures / f).is_file() or (figures / f).stat().st_size == 0]
    assert not missing, missing
    readme = (figures / 'README.md').read_text()
    for link in re.findall(r'\]\(([^)#]+)\)', readme):
        if not link.startswith('http'): assert (figures / link).is_file(), link


@pytest.mark.parametrize('family', ['resnet', 'mobilenet'])
def test_correlation_matrices_are_sane(reproduced, family):
    _, figures, _, _ = reproduced
    c = pd.read_csv(figures / f'fig1_correlation_{family}.csv')
    for method in ('spearman', 'pearson'):
        m = c.pivot(index='data_x', columns='data_y', values=method)
        vals = m.to_numpy(dtype=float)
        assert np.allclose(np.diag(vals), 1.0)
        ok = ~np.isnan(vals)
        assert np.allclose(vals[ok], vals.T[ok]) and (np.abs(vals[ok]) <= 1 + 1e-9).all()


def test_confidence_bands_contain_the_fit(reproduced):
    _, figures, _, _ = reproduced
    for f in ('fig2_pretrain_vs_downstream.csv', 'fig3_params_vs_accuracy.csv', 'fig4_top_bottom_ratio.csv'):
        b = pd.read_csv(figures / f).dropna(subset=['fit'])
        assert len(b) and (b.lower <= b.fit + 1e-9).all() and (b.fit <= b.upper + 1e-9).all(), f


def test_tables_have_a_row_per_model(reproduced):
    runs, figures, _, _ = reproduced
    b = pd.read_csv(runs / 'study_b' / 'results.csv')
    t1 = pd.read_csv(figures / 'table1_searched_vs_handcrafted.csv')
    # MobileNetV2, ResNet18, ResNet50, the searched net and random search's pick (same space, same compute)
    assert len(t1) == b.arch_id.nunique() == 5 and set(b.role) == {'baseline', 'searched', 'random_search'}
    svr = pd.read_csv(figures / 'check_search_vs_random.csv')
    assert list(svr.corpus) == ['tiny-objects'] and np.isclose(svr.searched - svr.random_search, svr.search_minus_random).all()
    a = pd.read_csv(runs / 'study_a' / 'results.csv')
    assert a.arch_id.nunique() == 6 and set(a.init) == {'simclr', 'random'}


def test_rerun_resumes_without_redoing_work(reproduced):
    runs, figures, _, _ = reproduced
    stamps = {p: p.stat().st_mtime for p in runs.glob('study_*/units/*/DONE.json')}
    r = subprocess.run([sys.executable, '-c', 'import sys; from ssl_arch.cli import main; sys.exit(main())', 'reproduce',
                        '--preset', str(runs.parent.parent / 'smoke-short.toml'), '--out', str(runs.parent), '--figures', str(figures)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p: p.stat().st_mtime for p in runs.glob('study_*/units/*/DONE.json')} == stamps
    meta = json.loads((runs / 'meta.json').read_text())  # both runs are recorded; the totals add them up
    assert len(meta['runs']) == 2 and meta['stage_seconds']['study A'] >= meta['runs'][0]['stage_seconds']['study A']
