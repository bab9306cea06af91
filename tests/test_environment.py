"The pinned environment: every dependency locked with hashes, environment.yml on conda-forge with the same packages."
import re
from pathlib import Path

try: import tomllib
except ModuleNotFoundError: import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
CONDA_NAMES = {'torch': 'pytorch'}   # the few packages conda-forge names differently


def _name(requirement: str) -> str: return re.split(r'[\s;<>=!~\[]', requirement, 1)[0].lower().replace('_', '-')

def _requirements() -> set[str]:
    reqs = PYPROJECT['dependencies'] + PYPROJECT['optional-dependencies']['dev']
    return {_name(r) for r in reqs if 'python_version <' not in r}


def test_every_dependency_is_pinned_with_hashes():
    lock = (ROOT / 'requirements-lock.txt').read_text()
    assert '#    make lock' in lock                                    # the one command that regenerates it
    entries = re.findall(r'^([A-Za-z0-9_.-]+)==(\S+?)(?: ;[^\\\n]*)? \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)', lock, re.M)
    pinned = {_name(n) for n, _, _ in entries}
    assert _requirements() <= pinned, f'not in requirements-lock.txt: {sorted(_requirements() - pinned)} (run make lock)'
    assert len(entries) == len(re.findall(r'^[A-Za-z0-9_.-]+==', lock, re.M))   # every pin has its hashes


def test_conda_environment_is_conda_forge_with_every_dependency():
    text = (ROOT / 'environment.yml').read_text()
    channels = re.search(r'^channels:\n((?:  - .*\n)+)', text, re.M)[1]
    assert channels.split() == ['-', 'conda-forge']
    listed = {_name(l.strip()[2:]) for l in text.splitlines() if l.strip().startswith('- ') and not l.strip().endswith(':')}
    missing = {CONDA_NAMES.get(r, r) for r in _requirements()} - listed
    assert not missing, f'environment.yml lacks {sorted(missing)}'
    assert re.search(r'^  - pytorch=\S+=cuda\*', text, re.M) and 'cuda-version' in text
