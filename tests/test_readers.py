"""Readers for DICOM, NIfTI, TIFF and JPEG; decode cache; skipping bad files; data check; splits."""
import re

import numpy as np
import pytest

from duiit_fast.cli import main
from duiit_fast.data import datasets, phantoms, read_folder, read_slices, split_images
from duiit_fast.data.writer import write_dicom_series, write_nifti
from duiit_fast.errors import DuiitDataError

from conftest import write_train_toml


@pytest.fixture(scope="module")
def ct_volume():
    anat = phantoms.make_cohort(1, 5, "ct")[0]
    return phantoms.render_patient(anat, "ct", 40, 5)


def test_dicom_series_round_trip_in_hounsfield_units(tmp_path, ct_volume):
    write_dicom_series(tmp_path / "series", ct_volume, "ct", "p1")
    names = sorted(p.name for p in (tmp_path / "series").iterdir())
    assert names[0] == "IM0001.dcm"  # file names run against the slice order on purpose
    np.testing.assert_allclose(read_slices(tmp_path / "series"), ct_volume, atol=0.5)
    one = read_slices(tmp_path / "series" / "IM0001.dcm")  # a single file: the last slice
    np.testing.assert_allclose(one[0], ct_volume[-1], atol=0.5)


def test_dicom_multiframe(tmp_path, ct_volume):
    import pydicom
    write_dicom_series(tmp_path / "s", ct_volume, "ct", "p1")
    ds = pydicom.dcmread(tmp_path / "s" / "IM0001.dcm")
    stored = np.round(ct_volume + 1024).astype(np.uint16)
    ds.NumberOfFrames = len(stored)
    ds.PixelData = stored.tobytes()
    ds.save_as(tmp_path / "multi.dcm")
    np.testing.assert_allclose(read_slices(tmp_path / "multi.dcm"), ct_volume, atol=0.5)


def test_dicom_without_pixels_and_compressed_without_decoder(tmp_path, ct_volume):
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless
    write_dicom_series(tmp_path / "s", ct_volume[:1], "ct", "p1")
    ds = pydicom.dcmread(tmp_path / "s" / "IM0001.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(DuiitDataError, match="nopix.dcm: DICOM without pixel data"):
        read_slices(tmp_path / "nopix.dcm")
    ds = pydicom.dcmread(tmp_path / "s" / "IM0001.dcm")
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "j2k.dcm", enforce_file_format=True)
    with pytest.raises(DuiitDataError, match=r"j2k.dcm: (compressed DICOM .* cannot be decoded|DICOM pixel data unreadable)"):
        read_slices(tmp_path / "j2k.dcm")
    (tmp_path / "fake.dcm").write_text("not dicom")
    with pytest.raises(DuiitDataError, match="fake.dcm"):
        read_slices(tmp_path / "fake.dcm")


def test_nifti_round_trip_and_orientation(tmp_path, ct_volume):
    import nibabel as nib
    write_nifti(tmp_path / "v.nii.gz", ct_volume)
    np.testing.assert_allclose(read_slices(tmp_path / "v.nii.gz"), ct_volume, atol=1e-3)
    # The same anatomy stored LPS (x and y axes flipped, affine says so) reads back identically.
    img = nib.load(tmp_path / "v.nii.gz")
    flipped = np.asarray(img.dataobj)[::-1, ::-1, :]
    affine = img.affine.copy()
    affine[0, 0], affine[1, 1] = -affine[0, 0], -affine[1, 1]
    nib.save(nib.Nifti1Image(flipped, affine), tmp_path / "lps.nii")
    np.testing.assert_allclose(read_slices(tmp_path / "lps.nii"), ct_volume, atol=1e-3)


def test_nifti_4d_rejected(tmp_path):
    import nibabel as nib
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), tmp_path / "t.nii")
    with pytest.raises(DuiitDataError, match="t.nii: expected a 3D volume, got 4D"):
        read_slices(tmp_path / "t.nii")


def test_tiff_16_bit_and_jpeg(tmp_path):
    from PIL import Image
    img16 = (np.arange(24 * 20) * 97 % 65535).astype(np.uint16).reshape(24, 20)
    Image.fromarray(img16).save(tmp_path / "a.tif")
    np.testing.assert_array_equal(read_slices(tmp_path / "a.tif")[0], img16.astype(np.float32))
    img8 = (np.arange(16 * 16) % 256).astype(np.uint8).reshape(16, 16)
    Image.fromarray(img8).save(tmp_path / "b.jpg", quality=100)
    assert read_slices(tmp_path / "b.jpg").shape == (1, 16, 16)


def test_empty_series_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DuiitDataError, match="empty folder"):
        read_slices(tmp_path / "empty")


def _dataset_with_problems(root, ct_volume):
    root.mkdir()
    np.save(root / "good.npy", ct_volume)
    np.save(root / "nan.npy", np.full((2, 8, 8), np.nan, np.float32))
    (root / "text.png").write_text("not an image")
    np.save(root / "orphan.npy", ct_volume)
    (root / "labels.csv").write_text("patient_id,age,path\ng,50,good.npy\nn,60,nan.npy\nt,70,text.png\n")


def test_bad_files_stop_or_are_skipped_and_counted(tmp_path, ct_volume):
    root = tmp_path / "ds"
    _dataset_with_problems(root, ct_volume)
    with pytest.raises(DuiitDataError, match=re.escape(str(root / "orphan.npy")) + ": image file has no label"):
        read_folder(root)
    folder = read_folder(root, on_bad_file="skip")
    assert [v[0] for v in folder.volumes] == ["g"]
    problems = {p.split("/")[-1]: why for p, why in folder.skipped}
    assert problems == {"orphan.npy": "image file has no label in labels.csv",
                        "nan.npy": "contains NaN or Inf values",
                        "text.png": problems["text.png"]} and "not a readable image" in problems["text.png"]


def test_data_check_cli(tmp_path, ct_volume, capsys):
    root = tmp_path / "ds"
    _dataset_with_problems(root, ct_volume)
    assert main(["data", "check", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "orphan.npy" in err
    assert main(["data", "check", str(root), "--on-bad-file", "skip"]) == 1
    out = capsys.readouterr().out
    assert "skipped 3 bad file(s)" in out and "1 patients" in out
    (root / "orphan.npy").unlink()
    (root / "nan.npy").unlink()
    (root / "text.png").unlink()
    (root / "labels.csv").write_text("patient_id,age,path\ng,50,good.npy\n")
    assert main(["data", "check", str(root)]) == 0
    assert "5 slices, 1 patients, ages 50.0–50.0" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2


def test_decode_cache_skips_parsing(tmp_path, ct_volume, monkeypatch):
    write_nifti(tmp_path / "v.nii.gz", ct_volume)
    first = datasets.read_cached(tmp_path / "v.nii.gz", tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1

    def no_parsing(path):
        raise AssertionError("decoded again despite the cache")
    monkeypatch.setattr(datasets, "read_slices", no_parsing)
    np.testing.assert_array_equal(datasets.read_cached(tmp_path / "v.nii.gz", tmp_path / "cache"), first)


def test_image_level_split_is_disjoint_and_covers():
    train, val, test = split_images(2438, 271 / 2438, 280 / 2438, seed=0)
    assert (len(train), len(val), len(test)) == (1887, 271, 280)
    assert len(set(train) | set(val) | set(test)) == 2438


def test_train_on_dicom_ct_and_nifti_mri(tmp_path, capsys):
    data = tmp_path / "data"
    common = ["--source-patients", "3", "--slices", "3", "--ct-size", "48", "--mri-size", "32",
              "--pet-size", "16", "--no-progress"]
    assert main(["phantoms", "--out", str(data / "dcm"), "--format", "dicom", "--ct-patients", "5",
                 "--modalities", "ct", *common]) == 0
    assert main(["phantoms", "--out", str(data / "nii"), "--format", "nifti", "--ct-patients", "1",
                 "--modalities", "mri", *common]) == 0
    config = write_train_toml(tmp_path / "run.toml", setting="MIX-CT-MRI", ct="data/dcm/ct", mri="data/nii/mri",
                              cache_dir="cache", split="image", out_dir=str(tmp_path / "run"))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    assert "image-level (leaky" in capsys.readouterr().out
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 5 + 3  # 5 CT series, 3 MRI volumes


def test_intensity_mappings_are_configurable():
    from duiit_fast.data.intensity import Intensity, normalize_volume
    hu = np.array([[[-1000.0, 0.0, 40.0, 80.0, 1000.0]]], np.float32)
    np.testing.assert_allclose(normalize_volume(hu, "ct")[0, 0], [-1, -1, 0, 1, 1])
    np.testing.assert_allclose(normalize_volume(hu, "ct", Intensity(ct_window=(0.0, 2000.0)))[0, 0],
                               [-1, 0, 0.04, 0.08, 1], atol=1e-6)
    mri = np.arange(101, dtype=np.float32).reshape(1, 1, 101)
    out = normalize_volume(mri, "mri", Intensity(mri_percentiles=(10.0, 90.0)))
    assert out.min() == -1 and out.max() == 1 and out[0, 0, 50] == pytest.approx(0.0)
    pet = np.array([[[0.0, 1.0, 2.0, 100.0]]], np.float32)
    assert normalize_volume(pet, "pet")[0, 0, 2] == pytest.approx(-0.96)
    assert normalize_volume(pet, "pet", Intensity(pet_percentile=50.0))[0, 0, 2] == pytest.approx(1.0)


def test_image_split_uses_the_papers_proportions(tmp_path):
    from duiit_fast import TrainConfig
    from duiit_fast.train.data import load_training_data
    root = tmp_path / "ct"
    root.mkdir()
    rows = ["patient_id,age,path"]
    for p in range(10):
        np.save(root / f"p{p}.npy", np.random.default_rng(p).normal(30, 5, (20, 32, 32)).astype(np.float32))
        rows.append(f"p{p},{30 + p},p{p}.npy")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_training_data(TrainConfig(setting="PURE-CT", ct=str(root), image_size=32, split="image"), log=None)
    assert (len(data.ct_train), len(data.ct_val), len(data.ct_test)) == (155, 22, 23)  # 200 · 1887|271|280 / 2438
