"""The registry: every data set's record (role, sources, licence, in or out of distribution for each corpus), corpora
with downstream sets near to and far from each, JSON-ready tables; and the one-way imports of the data layer."""
import json, subprocess, sys

from ssl_arch.datasets import dataset_info, dataset_names, dataset_table, downstream_sets, pretraining_corpora


def test_roles_and_distribution():
    assert len(pretraining_corpora()) >= 3 and len(downstream_sets()) >= 6
    for name in dataset_names():
        info = dataset_info(name)
        assert set(info.in_distribution) == set(pretraining_corpora())
        assert info.licence and info.sources and info.description
    # each corpus is in distribution for itself, and every corpus has downstream sets near and far
    for c in pretraining_corpora():
        assert dataset_info(c).in_distribution[c]
        near = [d for d in downstream_sets() if dataset_info(d).in_distribution[c]]
        assert 1 <= len(near) < len(downstream_sets()), (c, near)


def test_registry_records():
    rows = dataset_table()
    assert {r['name'] for r in rows} >= set(dataset_names()) | {'imagenet', 'inat2021', 'inat2021-mini', 'cifar10',
                                                                'svhn', 'dogs', 'cub200', 'mit67', 'sports8', 'nabirds'}
    for r in rows:
        json.dumps(r)
        assert {'name', 'role', 'num_classes', 'train_size', 'test_size', 'source', 'licence'} <= set(r)
    assert dataset_info('mit67').in_distribution['imagenet'] is False
    assert dataset_info('cub200').in_distribution['imagenet'] is True


def test_imports_go_one_way():
    "The registry imports neither the suite nor the loaders (nor torch); the suite does not import the loaders."
    check = ("import sys, ssl_arch.datasets; assert not {'ssl_arch.suite', 'ssl_arch.data', 'torch'} & set(sys.modules); "
             "import ssl_arch.suite; assert 'ssl_arch.data' not in sys.modules")
    subprocess.run([sys.executable, '-c', check], check=True)
