"Analysis on results with known correlations: coefficients, matrices, confidence bands, study B tables."
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssl_arch.results import ResultsError
from ssl_arch.analysis import (synthetic_study_a, synthetic_study_b, accuracy_table,
                               correlation, correlation_table, correlation_matrix, usable_sets, fit_band,
                               regression_panels, table1_pretraining, table2_transfer, table3_downstream,
                               table4_supervised, paper_comparison, stand_in, PAPER_NUMBERS, SYNTHETIC_CORPUS)


def test_known_correlations():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    assert correlation(x, x)['spearman'] == pytest.approx(1) and correlation(x, x)['pearson'] == pytest.approx(1)
    assert correlation(x, -x)['spearman'] == pytest.approx(-1) and correlation(x, -x)['pearson'] == pytest.approx(-1)
    assert correlation(x, np.exp(x))['spearman'] == pytest.approx(1) and correlation(x, np.exp(x))['pearson'] < 0.95
    a, b = rng.normal(size=(2, 2000))
    c = correlation(a, b)
    assert abs(c['spearman']) < 0.08 and abs(c['pearson']) < 0.08 and c['n'] == 2000


def test_correlation_matches_scipy_and_pairwise_missing():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 30))
    y = y + x
    y[[3, 7]] = np.nan
    ok = ~np.isnan(y)
    c = correlation(x, y)
    s, p = stats.spearmanr(x[ok], y[ok]), stats.pearsonr(x[ok], y[ok])
    assert c['n'] == 28
    assert (c['spearman'], c['spearman_p'], c['pearson'], c['pearson_p']) == pytest.approx(
        (s.statistic, s.pvalue, p.statistic, p.pvalue))


def test_undefined_correlation_is_nan_not_a_number():
    assert math.isnan(correlation([1, 2, 3, 4], [5, 5, 5, 5])['spearman'])
    assert math.isnan(correlation([1, 2], [3, 4])['pearson'])


def test_correlation_matrix_properties_with_noise_and_gaps():
    a = synthetic_study_a(n_per_family=15, seed=3)
    a.loc[a.sample(frac=0.05, random_state=0).index, 'top1'] = np.nan     # some results missing
    for family in ('resnet', 'mobilenet'):
        t = correlation_table(accuracy_table(a, family))
        for method in ('spearman', 'pearson'):
            m = correlation_matrix(t, method).to_numpy()
            assert m.shape == (4, 4)
            np.testing.assert_allclose(m, m.T, atol=1e-12)
            np.testing.assert_allclose(np.diag(m), 1)
            assert np.all((m >= -1 - 1e-12) & (m <= 1 + 1e-12))
        p = correlation_matrix(t, 'spearman_p').to_numpy()
        assert np.all((p >= 0) & (p <= 1))


def test_synthetic_structure_is_recovered():
    a = synthetic_study_a(n_per_family=10)
    rho = correlation_matrix(correlation_table(accuracy_table(a, 'resnet')))
    assert rho.loc[SYNTHETIC_CORPUS, 'tiny-lowres'] == pytest.approx(1)
    assert rho.loc[SYNTHETIC_CORPUS, 'tiny-shapes'] == pytest.approx(-1)
    # the random-init rows and the kNN protocol do not leak into the SimCLR / L-BFGS matrix
    knn = accuracy_table(a, 'resnet', protocol='knn')
    np.testing.assert_allclose(knn.to_numpy(), accuracy_table(a, 'resnet').to_numpy() - 5)


def test_usable_sets_drops_constant_columns_with_a_reason():
    acc = pd.DataFrame({'a': [1., 2., 3.], 'b': [100., 100., 100.], 'c': [1., np.nan, np.nan]})
    keep, why = usable_sets(acc)
    assert keep == ['a'] and why == {'b': 'every one of 3 models scores 100.0', 'c': '1 models (need 3)'}


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


def test_lowess_band_is_seeded_and_contains_fit():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 3, 40)
    y = np.sin(x) + rng.normal(0, 0.1, 40)
    b1, b2 = fit_band(x, y, 'lowess', n_boot=60, seed=4), fit_band(x, y, 'lowess', n_boot=60, seed=4)
    pd.testing.assert_frame_equal(b1, b2)
    assert (b1.lower <= b1.fit).all() and (b1.fit <= b1.upper).all()
    assert np.abs(b1.fit - np.sin(b1.x)).max() < 0.25


def test_fit_band_errors_name_the_problem():
    with pytest.raises(ResultsError, match='at least 3 points'): fit_band([1, 2], [1, 2])
    with pytest.raises(ResultsError, match="method='cubic' is not allowed"): fit_band([1, 2, 3], [1, 2, 3], 'cubic')


def test_regression_panels_per_axis():
    a = synthetic_study_a(n_per_family=8)
    pts, bands, st = regression_panels(a, 'pretrain', 'mobilenet')
    assert SYNTHETIC_CORPUS not in set(st.eval_data) and len(pts) == 8 * len(st)
    assert (bands.lower <= bands.fit + 1e-9).all() and (bands.fit <= bands.upper + 1e-9).all()
    _, _, st = regression_panels(a, 'params', 'resnet')
    assert st.set_index('eval_data').loc[SYNTHETIC_CORPUS, 'spearman'] > 0.9


def test_study_b_tables_have_a_row_per_model():
    b = synthetic_study_b()
    models = 3 + 2  # baselines, searched nets; random search's picks are in table 1 only, on the corpus they came from
    t1 = table1_pretraining(b).set_index('model')
    assert len(t1) == models + 2 and t1.loc['random search on tiny-species', 'tiny-species'] == \
        t1.loc['searched on tiny-species', 'tiny-species'] - 3 and np.isnan(t1.loc['random search on tiny-species', 'tiny-objects'])
    assert list(table2_transfer(b).model) == ['ResNet18', 'searched on tiny-objects', 'searched on tiny-species']
    t3 = table3_downstream(b)
    assert len(t3) == models * 2 and set(t3.pretrain_data) == {'tiny-objects', 'tiny-species'}
    assert t3.groupby('pretrain_data').model.nunique().eq(models).all()
    assert len(table4_supervised(b)) == 3


def test_paper_comparison_uses_stand_ins():
    assert stand_in('CIFAR-100', ['tiny-objects', 'tiny-lowres']) == 'tiny-lowres'
    assert stand_in('MIT-67', ['tiny-objects', 'tiny-lowres']) is None
    cmp = paper_comparison(synthetic_study_a(), synthetic_study_b()).set_index('what')
    assert len(cmp) == len(PAPER_NUMBERS)
    assert cmp.loc['Spearman rho, ImageNet vs CIFAR-100, ResNets', 'ours'] == pytest.approx(1)
    assert cmp.loc['Spearman rho, params vs FGVC-Aircraft, ResNets', 'ours'] < -0.9
    assert cmp.loc['Table 2: ResNet18 on ImageNet (top-1 %)', 'paper'] == 49.8
    assert 'no stand-in for MIT-67' in cmp.loc['Spearman rho, ImageNet vs MIT-67, MobileNets', 'how']
    none = paper_comparison(None, None)
    assert none.ours.isna().all() and none.how.str.endswith('results missing').all()


def test_checks_simclr_beats_floor_and_best_architectures():
    from ssl_arch.analysis import simclr_vs_random, best_architectures
    a = synthetic_study_a(n_per_family=5)
    chk = simclr_vs_random(a)
    assert (chk.simclr_wins == 10).all() and (chk.gain > 0).all()
    worse = a.copy()
    worse.loc[worse.init == 'random', 'top1'] *= 3                 # a floor above SimCLR: the check shows it
    assert (simclr_vs_random(worse).simclr_wins == 0).all()
    best = best_architectures(a, 'mobilenet').set_index('eval_data')
    assert best.loc['tiny-lowres', 'corpus_best_rank'] == 1 and best.loc['tiny-shapes', 'corpus_best_rank'] == 5
    assert (best.models == 5).all()
