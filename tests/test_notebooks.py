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
