"write_paper_figures on synthetic results folders: every file, sane contents, study B missing, papermill."
import json, re, shutil, subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssl_arch.figures import write_paper_figures, write_synthetic_results, figures_run
from ssl_arch.outputs import MANIFEST, claim_folder, record_files

FIGURES = ['fig1_correlation_resnet', 'fig1_correlation_mobilenet', 'fig2_pretrain_vs_downstream',
           'fig3_params_vs_accuracy', 'fig4_top_bottom_ratio', 'fig7_searched_architectures',
           'fig8_pretrain_vs_downstream_resnet', 'fig9_pretrain_vs_downstream_mobilenet',
           'fig10_params_vs_accuracy_resnet', 'fig11_params_vs_accuracy_mobilenet',
           'fig12_correlation_resnet', 'fig13_correlation_mobilenet']
TABLES = ['table1_searched_vs_handcrafted', 'table2_transfer', 'table3_downstream', 'table4_supervised', 'table5_datasets']
STUDY_B_ONLY = ('fig7', 'table1', 'table2', 'table3', 'table4')


@pytest.fixture(scope='module')
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp('full')
    results = write_synthetic_results(root / 'results', n_per_family=6)
    files = write_paper_figures(results, root / 'out')
    return results, root / 'out', files


def test_every_expected_file_is_written(full):
    _, out, files = full
    names = {p.name for p in files}
    for f in FIGURES: assert {f'{f}.png', f'{f}.svg', f'{f}.html', f'{f}.csv'} <= names, f
    for t in TABLES: assert {f'{t}.md', f'{t}.csv'} <= names, t
    assert {'fig5_samples.png', 'fig5_samples.svg', 'README.md', 'paper_comparison.csv', 'check_simclr_vs_random.md',
            'check_best_architectures.csv'} <= names
    assert sorted(p.name for p in out.iterdir()) == sorted(names | {MANIFEST})   # nothing else: no temporary files left


def test_images_decode_and_vector_files_parse(full):
    _, out, _ = full
    for png in out.glob('*.png'):
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.size[0] > 200 and im.size[1] > 100, png.name
    for svg in out.glob('*.svg'):
        assert ET.parse(svg).getroot().tag.endswith('svg'), svg.name
    html = (out / 'fig2_pretrain_vs_downstream.html').read_text()
    assert 'vegaEmbed' in html and 'tiny-lowres' in html


def _script_sources(page: Path) -> list[str]: return re.findall(r'<script[^>]*\bsrc="([^"]*)"', page.read_text())

def _offline(folder: Path) -> list[Path]:
    "Every HTML page under `folder`, after checking each loads only scripts that lie beside it (none from a network)."
    pages = sorted(folder.rglob('*.html'))
    for page in pages:
        for src in _script_sources(page):
            assert not re.match(r'([a-z]+:)?//', src) and (page.parent / src).is_file(), (page, src)
        assert not re.search(r'"url"\s*:', page.read_text()), page     # the data is inline too
    return pages


def test_html_figures_load_no_remote_script(full):
    _, out, _ = full
    pages = _offline(out)
    assert sorted(p.stem for p in pages) == sorted(FIGURES)
    assert all(_script_sources(p) == ['vega-bundle.js'] for p in pages)
    assert (out / 'vega-bundle.js').stat().st_size < 2_000_000 and max(p.stat().st_size for p in pages) < 500_000


def test_committed_figures_are_offline():
    assert _offline(Path(__file__).resolve().parents[1] / 'paper_figures' / 'tiny')


BROWSER = next(filter(None, map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome'))), None)

@pytest.mark.skipif(BROWSER is None, reason='no headless browser (chromium) installed: only the script sources are checked')
def test_a_browser_draws_an_html_figure_with_the_network_cut_off(full):
    _, out, _ = full
    offline = ['--host-resolver-rules=MAP * ~NOTFOUND', '--proxy-server=127.0.0.1:9']   # no name resolves, no proxy answers
    r = subprocess.run([BROWSER, '--headless=new', '--no-sandbox', '--disable-gpu', *offline, '--virtual-time-budget=5000',
                        '--dump-dom', (out / 'fig2_pretrain_vs_downstream.html').as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count('class="mark-symbol') >= 6 and 'tiny-lowres' in r.stdout   # vega drew the panels' points


def test_correlation_matrices_are_sane(full):
    _, out, _ = full
    for name in ('fig1_correlation_resnet', 'fig13_correlation_mobilenet'):
        t = pd.read_csv(out / f'{name}.csv')
        for method in ('spearman', 'pearson'):
            m = t.pivot(index='data_x', columns='data_y', values=method)
            np.testing.assert_allclose(m.to_numpy(), m.to_numpy().T, atol=1e-12)
            np.testing.assert_allclose(np.diag(m.to_numpy()), 1)
            assert ((m >= -1 - 1e-12) & (m <= 1 + 1e-12)).all().all()


def test_bands_contain_the_fit(full):
    _, out, _ = full
    for name in ('fig2_pretrain_vs_downstream', 'fig3_params_vs_accuracy', 'fig4_top_bottom_ratio', 'fig10_params_vs_accuracy_resnet'):
        d = pd.read_csv(out / f'{name}.csv').dropna(subset=['fit'])
        assert len(d) and (d.lower <= d.fit + 1e-9).all() and (d.fit <= d.upper + 1e-9).all(), name
        assert d.spearman.between(-1, 1).all()


def test_tables_have_a_row_per_model(full):
    results, out, _ = full
    b = pd.read_csv(results / 'study_b' / 'results.csv', keep_default_na=False)
    models = b.arch_id.nunique()
    assert len(pd.read_csv(out / 'table1_searched_vs_handcrafted.csv')) == models
    t3 = pd.read_csv(out / 'table3_downstream.csv')  # random search's picks are evaluated on their corpus only
    transferred = b[(b.init == 'simclr') & (b.eval_data != b.pretrain_data)].arch_id.nunique()
    assert transferred == models - 2 and len(t3) == transferred * b.pretrain_data.replace('', np.nan).dropna().nunique()
    svr = pd.read_csv(out / 'check_search_vs_random.csv')
    assert list(svr.corpus) == ['tiny-objects', 'tiny-species'] and np.allclose(svr.search_minus_random, 3)
    assert len(pd.read_csv(out / 'table4_supervised.csv')) == b[b.init == 'supervised'].arch_id.nunique()
    md = (out / 'table3_downstream.md').read_text()
    assert 'tiny-lowres (in)' in md and 'tiny-digits (out)' in md
    t5 = pd.read_csv(out / 'table5_datasets.csv')
    assert set(t5.name) == {'tiny-objects', 'tiny-species', 'tiny-lowres', 'tiny-shapes', 'tiny-digits'}
    assert t5.licence.str.len().gt(0).all()


def test_readme_shows_every_figure_and_table(full):
    _, out, _ = full
    readme = (out / 'README.md').read_text()
    for target in re.findall(r'\]\(([^)]+)\)', readme):
        assert (out / target).exists(), target
    for f in FIGURES: assert f'({f}.png)' in readme, f
    for t in TABLES: assert f'({t}.md)' in readme, t
    assert 'preset: **synthetic**' in readme and '12 architectures (6 mobilenet, 6 resnet)' in readme
    assert '| Spearman rho, ImageNet vs CIFAR-100, ResNets | 0.80 | 1.00 |' in readme
    assert readme.index('## Fig. 2:') < readme.index('## Fig. 12:') < readme.index('## Table 1:')
    assert '- paper: Spearman rho, ImageNet vs CIFAR-100, MobileNets = 0.23; ours: 1.00 (tiny-objects vs tiny-lowres' in readme
    assert '- paper: Table 2: ResNet18 on ImageNet (top-1 %) = 49.80; ours:' in readme


def test_missing_study_b_is_skipped_with_a_reason(tmp_path, capsys):
    results = write_synthetic_results(tmp_path / 'results', study_b=False, n_per_family=4)
    (results / 'meta.json').unlink()                                   # meta.json may be missing too
    a = pd.read_csv(results / 'study_a' / 'results.csv')               # and the corpus's own evaluation
    a[a.eval_data != a.pretrain_data].to_csv(results / 'study_a' / 'results.csv', index=False)
    earlier = claim_folder(tmp_path / 'out', 'figures')                                       # an earlier run wrote
    (earlier / 'table1_searched_vs_handcrafted.md').write_text('from an earlier run')            # table 1 (stale: removed)
    record_files(earlier, [earlier / 'table1_searched_vs_handcrafted.md'])
    (tmp_path / 'out' / 'notes.txt').write_text('mine')                                          # not ours: kept
    files = [Path(p) for p in figures_run(str(results), str(tmp_path / 'out'))]
    assert not (tmp_path / 'out' / 'table1_searched_vs_handcrafted.md').exists()
    assert (tmp_path / 'out' / 'notes.txt').read_text() == 'mine'
    assert 'wrote' in capsys.readouterr().out
    names = {p.name for p in files}
    assert not any(n.startswith(STUDY_B_ONLY) for n in names)
    assert {'fig1_correlation_resnet.png', 'table5_datasets.md', 'README.md'} <= names
    readme = (tmp_path / 'out' / 'README.md').read_text()
    assert 'no study_b/results.csv in the results folder (study B not run yet)' in readme
    assert 'study B results missing' in readme
    assert "x='pretrain' needs the corpus's own linear evaluation" in readme and 'fig2_pretrain_vs_downstream.png' not in names
    assert 'fig3_params_vs_accuracy.png' in names


def test_experiment_notebook_runs_under_papermill(tmp_path):
    import papermill as pm
    nb = Path(__file__).resolve().parents[1] / 'nbs' / 'experiments' / 'paper_figures.ipynb'
    results = write_synthetic_results(tmp_path / 'results', study_b=False, n_per_family=4)   # study B not run yet
    pm.execute_notebook(str(nb), str(tmp_path / 'executed.ipynb'), kernel_name='python3', language='python',
                        progress_bar=False, parameters=dict(results=str(results), out=str(tmp_path / 'out')))
    readme = (tmp_path / 'out' / 'README.md').read_text()
    assert 'study B not run yet' in readme and (tmp_path / 'out' / 'table5_datasets.csv').exists()
    executed = json.loads((tmp_path / 'executed.ipynb').read_text())
    assert any('files written to' in ''.join(o.get('text', '')) for c in executed['cells'] for o in c.get('outputs', []))
