"Architecture spaces as a user meets them: the `ssl-arch archs` console script, and a fresh process reading a searched architecture."
import json, subprocess, sys

from ssl_arch.archs import spec_from_id, spec_to_json

CLI = [sys.executable, '-c', 'import sys; from ssl_arch.cli import main; sys.exit(main())']


def run_cli(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_cli_show_json():
    r = run_cli('archs', 'show', 'mobilenet_v2', '--json')
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec['params_with_classifier'] == 3_504_872 and rec['family'] == 'mobilenet'
    assert {'id', 'family', 'params', 'params_with_classifier', 'top_bottom_ratio'} <= set(rec)


def test_cli_sample_one_object_per_line():
    r = run_cli('archs', 'sample', '--family', 'resnet', '--n', '4', '--seed', '3', '--preset', 'tiny', '--json')
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == 4 and len({r['id'] for r in recs}) == 4
    assert all(spec_from_id(r['id']).width in (8, 10, 12) for r in recs)


def test_console_script_error_has_no_traceback():
    r = run_cli('archs', 'show', 'resnet-basic-2202-w64-g1')
    assert r.returncode == 2
    assert "layers[2]=0 is not allowed: an integer in 1..48" in r.stderr and 'Traceback' not in r.stderr


def test_searched_family_loads_from_id_and_json_without_importing_it():
    "A fresh process that only imports archs reads a study B architecture from its id and from its JSON."
    code = ("import json, sys; from ssl_arch.archs import spec_from_id, spec_from_json, FAMILIES\n"
            "assert 'proxyless' not in FAMILIES\n"
            "d = json.loads(sys.argv[1]); s = spec_from_json(d); assert s.id == d['id'] and spec_from_id(s.id) == s\n")
    from ssl_arch.proxyless import ProxylessSpec, OPS, N_CELLS
    from ssl_arch.proxyless_search import ProxylessSupernet
    spec = ProxylessSupernet(0.25, small_images=True).derive()
    r = subprocess.run([sys.executable, '-c', code, spec_to_json(spec)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
