"""The head phantom: deterministic, age-bearing, renderable in every modality."""
import numpy as np
import pytest

from duiit_fast.data import phantoms


def test_cohort_is_deterministic_and_distinct_per_prefix():
    a, b = phantoms.make_cohort(3, 7, "mri"), phantoms.make_cohort(3, 7, "mri")
    assert [p.age for p in a] == [p.age for p in b]
    assert [p.age for p in a] != [p.age for p in phantoms.make_cohort(3, 7, "ct")]
    np.testing.assert_array_equal(phantoms.render_patient(a[0], "ct", 32, 4), phantoms.render_patient(b[0], "ct", 32, 4))


@pytest.mark.parametrize("modality,size", [("ct", 40), ("mri", 32), ("pet", 16)])
def test_render_shapes_and_units(modality, size):
    anat = phantoms.make_cohort(1, 0, "x")[0]
    vol = phantoms.render_patient(anat, modality, size, n_slices=5)
    assert vol.shape == (5, size, size) and vol.dtype == np.float32 and np.isfinite(vol).all()
    if modality == "ct":
        assert vol.min() < -900 and vol.max() > 500   # air and bone in Hounsfield units
    else:
        assert vol.min() >= 0


def test_default_native_sizes():
    assert phantoms.DEFAULT_NATIVE_SIZE == {"ct": 650, "mri": 256, "pet": 128}


def test_age_enlarges_ventricles_and_csf():
    rng = np.random.default_rng(3)
    young, old = phantoms.sample_anatomy(rng, "y", 25.0), phantoms.sample_anatomy(rng, "o", 85.0)

    def csf_fraction(anat):
        labels = phantoms.label_map(anat, 0.25, 128)
        brain_and_csf = np.isin(labels, [phantoms.CSF, phantoms.GM, phantoms.WM, phantoms.DEEP_GM, phantoms.LESION])
        return (labels == phantoms.CSF).sum() / brain_and_csf.sum()
    assert csf_fraction(old) > 1.3 * csf_fraction(young)
    assert phantoms.tissue_values(old, "ct")[phantoms.BONE] < phantoms.tissue_values(young, "ct")[phantoms.BONE]


def test_same_patient_same_anatomy_across_modalities():
    anat = phantoms.make_cohort(1, 0, "mri")[0]
    ct, mri = phantoms.render_patient(anat, "ct", 32, 3), phantoms.render_patient(anat, "mri", 32, 3)
    head_ct, head_mri = ct > -500, mri > 0.2 * mri.max()
    overlap = (head_ct & head_mri).sum() / (head_ct | head_mri).sum()
    assert overlap > 0.8


def test_more_test_patients_leave_training_validation_and_the_first_test_patients_unchanged():
    # The experiment's test set grew 30 → 200 on the trainings it had (duiit experiment --from RUN --test-patients N): the
    # patients are drawn in sequence, so only new patients are appended.
    import dataclasses
    from duiit_fast.config import PhantomConfig
    from duiit_fast.data.datasets import phantom_cohorts
    small = PhantomConfig(ct_train_patients=4, ct_val_patients=3, ct_test_patients=2, seed=5)
    big = phantom_cohorts(dataclasses.replace(small, ct_test_patients=9))
    small = phantom_cohorts(small)
    assert big["ct_train"] == small["ct_train"] and big["ct_val"] == small["ct_val"]
    assert big["ct_test"][:2] == small["ct_test"] and len(big["ct_test"]) == 9
    assert big["mri"] == small["mri"] and big["pet"] == small["pet"]
    assert len({a.patient_id for a in big["ct_test"]} & {a.patient_id for a in big["ct_train"] + big["ct_val"]}) == 0
