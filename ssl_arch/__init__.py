__version__ = "0.1.0"

# Every architecture family registers itself with `ssl_arch.archs` when its module is imported; study B's searched
# family (`ssl_arch.proxyless`) sits above `archs`, so the package imports it here, once, and `get_spec` knows every
# family without `archs` importing a module that imports it.
from . import proxyless
