"The one-way imports of the data layer, checked in a fresh process (the registry's records are tested in its notebook)."
import subprocess, sys


def test_imports_go_one_way():
    "The registry imports neither the suite nor the loaders (nor torch); the suite does not import the loaders."
    check = ("import sys, ssl_arch.datasets; assert not {'ssl_arch.suite', 'ssl_arch.data', 'torch'} & set(sys.modules); "
             "import ssl_arch.suite; assert 'ssl_arch.data' not in sys.modules")
    subprocess.run([sys.executable, '-c', check], check=True)
