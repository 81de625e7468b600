"""The paper's Tables 2–7 as analogues: the numbers placed, and the agreement sentences computed."""
import numpy as np
import pytest

from duiit_fast.eval import paper_tables as pt
from duiit_fast.eval.experiment_report import paired_tests


def _arms(**means):
    """Arms with three cohorts around the given means."""
    return {arm.replace("_", "-"): {"test_mse": [m - 2.0, m + 1.0, m + 1.5 + m / 100], "domain_fid": [m / 10] * 3}
            for arm, m in means.items()}


def test_tables_agree_when_duiit_is_lowest_everywhere():
    arms = _arms(PURE_CT=100, MIX_CT_MRI=60, TL_CT_MRI=80, MTL_CT_MRI=85, DANN_CT_MRI=82, CYCLEGAN_CT_MRI=90,
                 AUG_SIMPLE=95, AUG_AUTO=92, AUG_ERASING=93)
    text = "\n".join(pt.paper_tables(arms))
    assert "1 of 1 run (MIX-CT-MRI) — our run agrees" in text
    assert "MRI → CT: the paper's DUIIT is lowest of the five; here the lowest of the 5 run is DUIIT — agrees." in text
    assert "PET → CT: DUIIT and at least one baseline were not both run." in text
    assert "1 of 1 DUIIT arms run are below the best of the 3 augmentations run — our run agrees" in text
    mix = np.asarray(arms["MIX-CT-MRI"]["test_mse"])
    assert f"{mix.mean():.1f} ± {mix.std(ddof=1):.1f}" in text and "76.91 ± 8.31" in text and "not run" in text
    assert "Table 6: the paper's DUIIT (MRI → CT) differs from all 8 methods" in text
    assert "lower with p < 0.1 against 8 of 8 run" in text


def test_tables_disagree_and_p_values_are_the_paired_tests():
    arms = {"PURE-CT": {"test_mse": [80.0, 90.0, 70.0]}, "MIX-CT-MRI": {"test_mse": [85.0, 88.0, 79.0]},
            "TL-CT-MRI": {"test_mse": [70.0, 75.0, 72.0]}, "AUG-AUTO": {"test_mse": [60.0, 61.0, 65.0]}}
    text = "\n".join(pt.paper_tables(arms))
    assert "here the lowest of the 2 run is TL — disagrees." in text
    assert "0 of 1 run (none) — our run disagrees" in text
    assert "0 of 1 DUIIT arms run are below the best of the 1 augmentations run — our run disagrees" in text
    p = paired_tests(arms["MIX-CT-MRI"]["test_mse"], arms["PURE-CT"]["test_mse"])["t_p"]
    assert f"{p:.3f} (higher)" in text
    assert "lower with p < 0.1 against 0 of 3 run (none)" in text


def test_table5_reports_the_domain_fid_order_and_the_missing_inception_weights():
    arms = {"CYCLEGAN-CT-MRI": {"test_mse": [1.0, 2.0], "domain_fid": [3.0, 4.0]},
            "MIX-CT-MRI": {"test_mse": [1.0, 2.0], "domain_fid": [5.0, 6.0]}}
    text = "\n".join(pt.table5(arms))
    assert "DUIIT's domain FID is higher than CycleGAN's (5.50 vs 3.50) — agrees" in text
    assert "`fid_weights`" in text


@pytest.mark.parametrize("table", [pt.table2, pt.table3, pt.table4, pt.table5, pt.table6_7])
def test_every_table_renders_with_no_arms(table):
    assert table({})


def test_the_report_states_what_the_wilcoxon_test_can_reach_with_its_cohorts():
    from scipy import stats
    from duiit_fast.eval.experiment_report import _wilcoxon_floor
    for n in (3, 4, 5, 8):
        floor = stats.wilcoxon(np.arange(1.0, n + 1)).pvalue    # better on every cohort: the smallest p
        line = _wilcoxon_floor(n)
        assert f"{n} cohorts" in line and (f"{floor:.3g}" in line or f"{floor:.4g}" in line), line
        assert ("out of reach" in line) == (floor >= 0.1)
