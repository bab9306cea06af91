"The documentation site's sources: notebooks nbdev can process for it, no reference outside the repository."
import ast, json, re, subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / 'nbs').rglob('*.ipynb'))
EXPORTED = re.compile(r'^#\|\s*export[si]?\b', re.M)


def _cells(path: Path):
    return [(i, c['cell_type'], ''.join(c['source'])) for i, c in enumerate(json.loads(path.read_text())['cells'])]


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / 'nbs')))
def test_no_cell_mixes_imports_with_code(path):
    "nbdev executes every cell that imports something while it builds the docs, without the cells before it: such a cell must only import."
    for i, kind, src in _cells(path):
        if kind != 'code' or EXPORTED.search(src): continue
        body = ast.parse('\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!')))).body
        imports = any(isinstance(n, (ast.Import, ast.ImportFrom)) for t in body for n in ast.walk(t))
        others = [t for t in body if not isinstance(t, (ast.Import, ast.ImportFrom))]
        assert not (imports and others), f"{path.name} cell {i} mixes imports with code: move its imports to the notebook's import cell\n{src}"


REPO_DOCUMENTS = {Path(f).name for f in subprocess.run(['git', 'ls-files', '*.md', '**/*.md'], cwd=ROOT, capture_output=True,
                                                         text=True, check=True).stdout.split()} | {'README.md'}  # and those written


@pytest.mark.parametrize('path', NOTEBOOKS + [ROOT / 'README.md'], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_outside_the_repository(path):
    texts = [src for _, kind, src in _cells(path) if kind == 'markdown'] if path.suffix == '.ipynb' else [path.read_text()]
    base = ROOT if path.name in ('index.ipynb', 'README.md') else path.parent   # index.ipynb is README.md's source
    for text in texts:
        for name in re.findall(r'(?<![\w/.-])([\w-]+\.md)\b', text):   # a document cited by name is one of the repository's
            assert name in REPO_DOCUMENTS, f'{path.name} cites {name}, which is not in the repository'
        for target in re.findall(r'\]\(([^)#\s]+)', text):       # markdown links: inside the repository or on the web
            if re.match(r'[a-z]+:', target): continue
            assert (base / target).resolve().is_relative_to(ROOT), f'{path.name} links {target}, outside the repository'
            assert (base / target).exists(), f'{path.name} links {target}, which does not exist'
        assert not re.search(r'(?<![\w.])\.\./\.\.', text), f'{path.name} names a path above the repository'
