"""The library's imports go one way: no module imports (at the top or inside a function) one that imports it back."""
import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / 'ssl_arch'


def imports_of(path: Path) -> set[str]:
    "The ssl_arch modules `path` imports anywhere in its code (function-local imports included)."
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = 'ssl_arch' if node.level == 1 else (node.module or '')
            if node.level == 1 and node.module: found.add(node.module.split('.')[0])
            elif base == 'ssl_arch': found |= {a.name for a in node.names if (LIB / f'{a.name}.py').exists()}
            elif base.startswith('ssl_arch.'): found.add(base.split('.')[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split('.')[1] for a in node.names if a.name.startswith('ssl_arch.')}
    return found - {path.stem}


def graph() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in LIB.glob('*.py') if p.stem not in ('__init__', '_modidx')}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    "One cycle of `g` as a list of nodes (first = last), or None."
    state, stack = {}, []
    def visit(n):
        state[n] = 'open'; stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 'open': return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)): return c
        state[n] = 'done'; stack.pop()
    for n in sorted(g):
        if n not in state and (c := visit(n)): return c


def test_the_checker_finds_a_cycle_and_accepts_a_chain():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None


def test_the_checker_reads_every_import_form(tmp_path):
    f = tmp_path / 'm.py'
    f.write_text("from .archs import x\nfrom ssl_arch import files\nimport ssl_arch.data\n"
                 "def f():\n    from ssl_arch.simclr import y\n")
    assert imports_of(f) == {'archs', 'files', 'data', 'simclr'}


def test_no_import_cycles_in_the_library():
    g = graph()
    assert {'archs', 'simclr', 'evaluate', 'study'} <= set(g)
    assert find_cycle(g) is None, f"import cycle: {' -> '.join(find_cycle(g))}"


# The layers, lowest first: a module imports only from layers below its own. Files -> output folders and data sets
# -> data naming, streaming and fixtures -> architectures -> training pieces -> pretraining / search / supervised
# -> features and probes -> presets -> studies -> analysis -> figures -> the job.
LAYERS = [('files',), ('outputs', 'datasets'), ('suite',), ('data', 'augment', 'distributed'), ('archs', 'fixtures', 'sources', 'streaming'), ('proxyless',),
          ('training', 'results'), ('simclr',), ('proxyless_search', 'supervised'), ('evaluate',), ('preset',),
          ('study',), ('analysis',), ('claims',), ('figures',), ('reproduce',), ('cli',)]


def test_imports_go_down_the_layers():
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    g = graph()
    assert set(g) == set(rank), f"modules without a layer: {set(g) ^ set(rank)}"
    upward = [(m, n) for m, deps in g.items() for n in deps if rank[n] >= rank[m] and n != m]
    assert not upward, f"imports that do not go down a layer: {upward}"
