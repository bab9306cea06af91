"Architecture spaces: what is too slow for the notebook, and the `ssl-arch archs` command line as a user runs it."
import json, subprocess, sys

import pytest
import torch

from ssl_arch.cli import main

from ssl_arch.preset import get_preset
from ssl_arch.archs import (ResNetSpec, MobileNetSpec, NAMED_SPECS, build_backbone, build_model,
                            param_counts, sample_archs, spec_from_id, spec_from_json, spec_to_json)

CLI = [sys.executable, '-c', 'import sys; from ssl_arch.cli import main; sys.exit(main())']


@pytest.fixture(scope='module')
def paper_samples():
    paper = get_preset('paper')
    return {f: sample_archs(paper.space(f), seed=0) for f in ('resnet', 'mobilenet')}


def test_paper_preset_counts_ranges_and_determinism(paper_samples):
    res, mb = paper_samples['resnet'], paper_samples['mobilenet']
    assert (len(res), len(set(res))) == (69, 69)
    assert (len(mb), len(set(mb))) == (47, 47)
    assert all(10e6 <= param_counts(s)[1] <= 60e6 for s in res)
    assert all(2e6 <= param_counts(s)[1] <= 7e6 for s in mb)
    assert {s.block for s in res} == {'basic', 'bottleneck'}
    assert sample_archs(get_preset('paper').resnet, seed=0) == res  # same seed, same models
    assert sample_archs(get_preset('paper').resnet, seed=1) != res


def test_ids_and_json_round_trip(paper_samples):
    for spec in [*paper_samples['resnet'], *paper_samples['mobilenet'], *NAMED_SPECS.values()]:
        assert spec_from_id(spec.id) == spec
        assert spec_from_json(spec_to_json(spec)) == spec
        assert spec_from_id(spec.scaled(0.25).id) == spec.scaled(0.25)


@pytest.mark.parametrize('family', ['resnet', 'mobilenet'])
def test_every_tiny_spec_trains_at_32x32(family):
    torch.manual_seed(0)
    for spec in sample_archs(get_preset('tiny').space(family)):
        model = build_model(spec, num_classes=10, small_images=True)
        x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters()), spec.id


def test_backbone_states_feature_dim():
    for spec in [ResNetSpec('bottleneck', (2, 2, 2, 2), 16), MobileNetSpec((2,) * 7, 0.25)]:
        bb = build_backbone(spec, small_images=True)
        assert bb(torch.randn(2, 3, 32, 32)).shape == (2, bb.feature_dim)
    assert build_backbone('resnet50').feature_dim == 2048


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


@pytest.mark.parametrize('args, message', [
    (["archs", "show", "resnet-basic-2.2.49.2-w64-g1"], "layers[2]=49 is not allowed: an integer in 1..48"),
    (['archs', 'show', 'resnet-basic-2202-w64-g1'], "layers[2]=0 is not allowed"),
    (['archs', 'show', 'resnet-dense-2222-w64-g1'], "is not allowed: the form 'resnet-{basic|bottleneck}"),
    (['archs', 'show', 'resnet-basic-2222-w0-g1'], "width=0 is not allowed: a positive integer"),
    (['archs', 'show', 'resnet-basic-2222-w64-g2'], "groups=2 is not allowed: 1 for block='basic'"),
    (['archs', 'show', 'resnet-bottleneck-2222-w20-g1-wpg4'], "width_per_group=4 is not allowed"),
    (['archs', 'show', 'mbv2-w1.0-22222'], "depths=(2, 2, 2, 2, 2) is not allowed: a tuple of 7"),
    (['archs', 'show', 'mbv2-w0-2222222'], "width_mult=0.0 is not allowed: a number in (0, 8]"),
    (['archs', 'show', 'not-an-id'], "id='not-an-id' is not allowed"),
    (['archs', 'sample', '--family', 'vit'], "family='vit' is not allowed: 'resnet' or 'mobilenet'"),
    (['archs', 'sample', '--preset', 'huge'], "preset='huge' is not allowed: one of paper, tiny, smoke, or an existing .toml or .json file"),
    (['archs', 'sample', '--set', 'resnet.n=two'], "resnet.n='two' is not allowed: an int"),
    (['archs', 'sample', '--n', '100000'], "n=100000 is not allowed: at most 1458"),
])
def test_cli_bad_input_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1


def test_console_script_error_has_no_traceback():
    r = run_cli('archs', 'show', 'resnet-basic-2202-w64-g1')
    assert r.returncode == 2
    assert "layers[2]=0 is not allowed: an integer in 1..48" in r.stderr and 'Traceback' not in r.stderr


def test_layers_above_nine_round_trip():
    spec = ResNetSpec('bottleneck', (3, 8, 36, 3))
    assert spec.id == 'resnet-bottleneck-3.8.36.3-w64-g1' and spec_from_id(spec.id) == spec


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
