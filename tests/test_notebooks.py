"Every experiment notebook is a papermill notebook a user can inspect: one tagged `parameters` cell, a kernel, listed parameters."
import json, subprocess, sys
from pathlib import Path

import pytest

EXPERIMENTS = sorted((Path(__file__).parent.parent / 'nbs' / 'experiments').glob('*.ipynb'))


def test_there_are_experiment_notebooks():
    assert {'pretrain', 'linear_eval', 'study_a', 'study_b'} <= {p.stem for p in EXPERIMENTS}


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: p.stem)
def test_one_tagged_typed_parameters_cell(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    lines = [l for l in ''.join(tagged[0]['source']).splitlines() if l.strip() and not l.startswith('#')]
    assert lines and all(': ' in l.split('=')[0] and '#' in l for l in lines), f"{path.name}: untyped or uncommented parameter"
    assert nb['metadata']['kernelspec']['name'] == 'python3'


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter(path):
    "papermill silently drops a parameter whose comment it cannot parse (one holding '=', say): every one must be listed."
    nb = json.loads(path.read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    names = [l.split(':')[0].strip() for l in ''.join(cell['source']).splitlines() if l.strip() and not l.startswith('#')]
    r = subprocess.run([sys.executable, '-m', 'papermill', '--help-notebook', str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    missing = [n for n in names if f'  {n}: ' not in r.stdout]
    assert not missing, f"{path.name}: papermill does not list {missing}"


def _parameters(name: str) -> list[str]:
    nb = json.loads((EXPERIMENTS[0].parent / f'{name}.ipynb').read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    return [l.split(':')[0].strip() for l in ''.join(cell['source']).splitlines() if l.strip() and not l.startswith('#')]


@pytest.mark.parametrize('name, config, skipped, extra', [
    ('pretrain', 'ssl_arch.simclr.PretrainConfig', {'world_size', 'preset'}, {'config', 'preset', 'out', 'device'}),
    ('search', 'ssl_arch.proxyless_search.SearchConfig', set(), {'data', 'config', 'method', 'n_candidates', 'preset', 'out', 'device'}),
    ('supervised', 'ssl_arch.supervised.SupervisedConfig', {'preset'}, {'config', 'preset', 'out', 'device'}),
])
def test_step_notebook_parameters_are_its_config_fields(name, config, skipped, extra):
    "A field added to a step's config must appear as a parameter of its experiment notebook (and nothing else may)."
    import importlib
    from dataclasses import fields
    module, cls = config.rsplit('.', 1)
    expected = {f.name for f in fields(getattr(importlib.import_module(module), cls))} - skipped | extra
    params = _parameters(name)
    assert len(params) == len(set(params)) and set(params) == expected, set(params) ^ expected
