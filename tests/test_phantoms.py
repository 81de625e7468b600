"""The head phantom: deterministic, age-bearing, renderable in every modality."""
import numpy as np
import pytest
import torch

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


def test_each_mri_contrast_orders_its_tissues_as_docs_phantom_md_states():
    """T1 keeps its hand-set values (every record was rendered with them); T2: CSF and lesions
    bright, grey above white, cortical bone and air dark; FLAIR: CSF suppressed, lesions bright,
    grey above white."""
    P = phantoms
    anat = P.make_cohort(1, 0, "mri")[0]
    t1 = P.tissue_values(anat, "mri")
    assert (t1[P.FAT], t1[P.CSF], t1[P.GM], t1[P.DEEP_GM], t1[P.LESION], t1[P.BONE]) == (0.95, 0.12, 0.55, 0.65, 0.45, 0.04)
    np.testing.assert_array_equal(P.tissue_values(anat, "mri", "t1"), t1)
    t2 = P.tissue_values(anat, "mri", "t2")
    assert t2[P.CSF] > t2[P.LESION] > t2[P.GM] > t2[P.DEEP_GM] > t2[P.WM] > 4 * t2[P.SKIN]
    assert t2[P.BONE] < 0.01 and t2[P.AIR] == 0.0 and t2.max() == pytest.approx(0.95)
    flair = P.tissue_values(anat, "mri", "flair")
    assert flair[P.LESION] > flair[P.GM] > flair[P.WM] > 5 * flair[P.CSF]
    assert flair[P.BONE] < 0.01 and flair.max() == pytest.approx(0.95)
    with pytest.raises(ValueError, match="mri_contrast must be one of"):
        P.tissue_values(anat, "mri", "pd")


def test_the_default_mri_is_the_t1_every_record_used():
    anat = phantoms.make_cohort(1, 2, "mri")[0]
    np.testing.assert_array_equal(phantoms.render_patient(anat, "mri", 32, 3),
                                  phantoms.render_patient(anat, "mri", 32, 3, mri_contrast="t1"))
    t2 = phantoms.render_patient(anat, "mri", 32, 3, mri_contrast="t2")
    assert t2.shape == (3, 32, 32) and not np.allclose(t2, phantoms.render_patient(anat, "mri", 32, 3))


@pytest.mark.parametrize("contrast", ["t1", "t2", "flair"])
def test_age_cues_survive_in_each_contrast(contrast):
    """A small CT-style reader trained on 36 patients' slices of the contrast reads the age of 12 others:
    patient-mean correlation (measured 0.94 / 0.95 / 0.81 for t1 / t2 / flair with these seeds)."""
    from duiit_fast.data.datasets import build_slice_set, phantom_volumes
    from duiit_fast.eval.label_cues import read_ages, train_reader
    cohort = phantoms.make_cohort(48, 5, "mri")
    slices = build_slice_set(phantom_volumes(cohort, "mri", 48, 6, 5, None, contrast), "mri", 32)
    train = torch.from_numpy(np.isin(slices.patient_ids, [a.patient_id for a in cohort[:36]]))
    torch.manual_seed(0)
    reader = train_reader(slices.images[train], slices.ages[train], 300, 0, "cpu")
    predicted, ages, ids = read_ages(reader, slices.images[~train], "cpu"), slices.ages[~train], slices.patient_ids[~train.numpy()]
    means = np.array([(predicted[torch.from_numpy(ids == p)].mean().item(), ages[torch.from_numpy(ids == p)][0].item())
                      for p in np.unique(ids)])
    assert np.corrcoef(means[:, 0], means[:, 1])[0, 1] > 0.6
