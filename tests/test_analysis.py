"Analysis beyond its notebook: the OLS confidence band's coverage, measured over 300 noisy samples (seconds)."
import numpy as np

from ssl_arch.analysis import fit_band


def test_ols_band_contains_fit_and_covers_the_true_line():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 20)
    covered = 0
    for _ in range(300):
        y = 1 + 2 * x + rng.normal(0, 0.3, x.size)
        band = fit_band(x, y, grid=11)
        assert (band.lower <= band.fit).all() and (band.fit <= band.upper).all()
        covered += band.lower[5] <= 2.0 <= band.upper[5]          # the true mean at x = 0.5 is 2
    assert 0.90 <= covered / 300 <= 0.99                          # a 95% band
