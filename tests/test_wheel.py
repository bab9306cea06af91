"An installed copy runs a study: the wheel carries the experiment notebooks, and a unit runs from it outside the checkout."
import json, os, shutil, subprocess, sys, zipfile
from pathlib import Path

import pytest

from ssl_arch.datasets import data_dir

ROOT = Path(__file__).resolve().parents[1]
UNIT = """
import json, sys
from pathlib import Path
import ssl_arch
from ssl_arch.preset import get_preset
from ssl_arch.study import EXPERIMENTS_DIR, run_unit, study_a_units, unit_dir
pre = study_a_units(get_preset('smoke'), n_resnet=1, n_mobilenet=1, sets=['tiny-digits'])[0]
run_unit(Path(sys.argv[1]), pre)
print(json.dumps(dict(package=ssl_arch.__file__, experiments=str(EXPERIMENTS_DIR), unit=pre.name,
                      done=(unit_dir(Path(sys.argv[1]), pre) / 'DONE.json').exists())))
"""


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    "The project's wheel, built (offline, no build isolation) from a copy of the sources, so the checkout stays clean."
    src, out = tmp_path_factory.mktemp('src'), tmp_path_factory.mktemp('wheel')
    for name in ('pyproject.toml', 'README.md'): shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / 'ssl_arch', src / 'ssl_arch', ignore=shutil.ignore_patterns('__pycache__'))  # the link, followed
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-q',
                        '-w', str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return next(out.glob('ssl_arch-*.whl'))


def test_the_wheel_carries_the_experiment_notebooks(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).name for n in names if n.startswith('ssl_arch/experiments/'))
    assert shipped == sorted(p.name for p in (ROOT / 'nbs' / 'experiments').glob('*.ipynb'))
    assert not any(n.startswith('nbs/') for n in names)


def test_a_unit_runs_from_the_installed_copy(wheel, tmp_path):
    site = tmp_path / 'site'
    zipfile.ZipFile(wheel).extractall(site)                        # what `pip install` puts in site-packages
    env = dict(os.environ, PYTHONPATH=str(site), SSL_ARCH_DATA=str(data_dir()), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', UNIT, str(tmp_path / 'study')], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(out['package']).is_relative_to(site) and Path(out['experiments']).is_relative_to(site)
    assert out['done'] and (tmp_path / 'study' / 'notebooks' / f"{out['unit']}.ipynb").exists()
