"""Hostile and silently-wrong input files: bounded before allocation, one line naming the file."""
import os

import numpy as np
import pytest

from duiit_fast.cli import main
from duiit_fast.data import phantoms, read_folder, read_slices
from duiit_fast.data.writer import write_dicom_series
from duiit_fast.errors import DuiitDataError


@pytest.fixture(scope="module")
def volume():
    return phantoms.render_patient(phantoms.make_cohort(1, 3, "ct")[0], "ct", 24, 4)


def _dataset(root, rows, header="patient_id,age,path"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root


def test_png_declaring_a_huge_canvas_is_refused_before_decoding(tmp_path):
    import struct
    import zlib
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                                        + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    with pytest.raises(DuiitDataError, match="bomb.png: (image too large|header declares)"):
        read_slices(tmp_path / "bomb.png")


def test_npy_header_larger_than_the_file_is_refused(tmp_path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)}
    with open(tmp_path / "big.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\x00" * 64)
    with pytest.raises(DuiitDataError, match="big.npy: header declares"):
        read_slices(tmp_path / "big.npy")
    header["shape"] = (20, 20)
    with open(tmp_path / "short.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\x00" * 64)
    with pytest.raises(DuiitDataError, match="short.npy: header declares 1600 bytes"):
        read_slices(tmp_path / "short.npy")


def test_nifti_header_declaring_gigabytes_is_refused(tmp_path):
    import nibabel as nib
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    img.to_filename(str(tmp_path / "v.nii"))
    raw = bytearray((tmp_path / "v.nii").read_bytes())
    raw[40:56] = np.array([3, 4096, 4096, 4096, 1, 1, 1, 1], "<i2").tobytes()   # dim[0..7]
    (tmp_path / "v.nii").write_bytes(bytes(raw))
    with pytest.raises(DuiitDataError, match="v.nii: header declares 4096 x 4096 x 4096"):
        read_slices(tmp_path / "v.nii")


def test_fifo_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "a.png")
    with pytest.raises(DuiitDataError, match="a.png: not a regular file"):
        read_slices(tmp_path / "a.png")


def test_csv_problems_are_one_line(tmp_path, volume):
    root = tmp_path / "d"
    np.save(root.mkdir() or root / "a.npy", volume)
    _dataset(root, ["p1,50,a.npy," + "x" * (200 * 1024)], header="patient_id,age,path,note")
    with pytest.raises(DuiitDataError, match="labels.csv: not a readable CSV file"):
        read_folder(root)
    (root / "labels.csv").write_bytes("\ufeffpatient_id,age,path\np1,50,a.npy\n".encode("utf-8"))
    assert read_folder(root).volumes[0][0] == "p1"     # a spreadsheet's byte-order mark is fine
    for age, problem in (("1e300", "is not a number of years"), ("-50", "is outside"), ("4_2", "is not a number"),
                         ("４２", "is not a number"), ("42.5.1", "is not a number")):
        _dataset(root, [f"p1,{age},a.npy"])
        with pytest.raises(DuiitDataError, match=f"line 2: age .* {problem}"):
            read_folder(root)
    _dataset(root, ["p1,50,a.npy", "p2,60,a.npy"])
    with pytest.raises(DuiitDataError, match="line 3: a.npy is already labelled on line 2"):
        read_folder(root)
    _dataset(root, ["p1,50,a.npy,1e39,0"], header="patient_id,age,path,rescale_slope,rescale_intercept")
    with pytest.raises(DuiitDataError, match="rescale_slope 1e\\+39 is not a plausible scale"):
        read_folder(root)
    np.save(root / "a.npy", np.full((2, 8, 8), 3e38, np.float32))
    _dataset(root, ["p1,50,a.npy,100,0"], header="patient_id,age,path,rescale_slope,rescale_intercept")
    with pytest.raises(DuiitDataError, match="a.npy: values overflow after rescale_slope"):
        read_folder(root)


def _edit_dicom(folder, **tags):
    import pydicom
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        for k, v in tags.items():
            setattr(ds, k, v(ds) if callable(v) else v)
        ds.save_as(f)


@pytest.mark.parametrize("tag,value,message", [
    ("RescaleSlope", "abc", "RescaleSlope 'abc' is not a number"),
    ("RescaleSlope", "0", "RescaleSlope is 0"),
    ("InstanceNumber", "1A", "InstanceNumber '1A' is not an integer"),
])
def test_bad_dicom_tags_are_one_line(tmp_path, volume, tag, value, message):
    import pydicom
    write_dicom_series(tmp_path / "s", volume, "ct", "p1")
    f = sorted((tmp_path / "s").iterdir())[0]
    ds = pydicom.dcmread(f)
    ds[tag].VR = "LO"
    ds[tag].value = value
    ds.save_as(f)
    with pytest.raises(DuiitDataError, match=message):
        read_slices(tmp_path / "s")


def test_a_folder_mixing_series_or_orientations_is_rejected(tmp_path, volume):
    from pydicom.uid import generate_uid
    write_dicom_series(tmp_path / "s", volume, "ct", "p1")
    first = sorted((tmp_path / "s").iterdir())[0]
    import pydicom
    ds = pydicom.dcmread(first)
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(first)
    with pytest.raises(DuiitDataError, match="s: folder mixes 2 DICOM series"):
        read_slices(tmp_path / "s")
    write_dicom_series(tmp_path / "t", volume, "ct", "p1")
    ds = pydicom.dcmread(sorted((tmp_path / "t").iterdir())[0])
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(sorted((tmp_path / "t").iterdir())[0])
    with pytest.raises(DuiitDataError, match="different orientations"):
        read_slices(tmp_path / "t")


def test_sagittal_series_is_reoriented_to_the_same_axial_slices(tmp_path, volume):
    """The axial volume re-sliced sagittally (rows superior → inferior, columns anterior →
    posterior) reads back as the same axial slices."""
    import pydicom
    write_dicom_series(tmp_path / "axial", volume, "ct", "p1")
    template = pydicom.dcmread(sorted((tmp_path / "axial").iterdir())[0])
    dz = float(template.SliceThickness)
    dy = dx = float(template.PixelSpacing[0])
    top = float(pydicom.dcmread(sorted((tmp_path / "axial").iterdir())[0]).ImagePositionPatient[2])
    (tmp_path / "sag").mkdir()
    stored = np.round(volume + 1024).astype(np.uint16)
    for k in range(volume.shape[2]):
        ds = template.copy()
        image = np.ascontiguousarray(stored[::-1, :, k])      # rows: superior → inferior
        ds.Rows, ds.Columns = image.shape
        ds.PixelData = image.tobytes()
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-120 + k * dx, -120, top]
        ds.PixelSpacing = [dz, dy]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(tmp_path / "sag" / f"S{k:03d}.dcm")
    np.testing.assert_allclose(read_slices(tmp_path / "sag"), read_slices(tmp_path / "axial"), atol=1e-4)


def test_error_naming_an_undecodable_file_name_prints_one_line(tmp_path, capsys):
    root = tmp_path / "d"
    root.mkdir()
    bad = os.fsencode(str(root)) + b"/caf\xe9.png"
    with open(bad, "wb") as f:
        f.write(b"not a png")
    (root / "labels.csv").write_bytes(b"patient_id,age,path\np1,50,caf\xc3\xa9.png\n")
    assert main(["data", "check", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("duiit: error:") and "caf" in err


def test_dicom_of_another_modality_in_the_ct_folder_is_rejected(tmp_path, volume):
    write_dicom_series(tmp_path / "ct" / "p1", volume, "mri", "p1")
    _dataset(tmp_path / "ct", ["p1,50,p1"])
    from duiit_fast.data.datasets import load_folder
    with pytest.raises(DuiitDataError, match="DICOM Modality is MR, but this is the ct dataset"):
        load_folder(tmp_path / "ct", "ct", 16)
    assert read_folder(tmp_path / "ct").volumes   # without an expected modality nothing is checked


def test_skip_report_with_an_undecodable_file_name(tmp_path, capsys):
    root = tmp_path / "d"
    root.mkdir()
    np.save(root / "ok.npy", np.zeros((1, 8, 8), np.float32))
    with open(os.fsencode(str(root)) + b"/caf\xe9.npy", "wb") as f:
        f.write(b"junk")
    (root / "labels.csv").write_text("patient_id,age,path\np1,50,ok.npy\n")
    assert main(["data", "check", str(root), "--on-bad-file", "skip"]) == 1
    out = capsys.readouterr().out
    assert "skipped 1 bad file(s)" in out and "caf\\xe9.npy" in out


def _corpus():
    import glob
    import nibabel
    import pydicom.data
    paths = list(pydicom.data.get_testdata_files())
    paths += glob.glob(os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "*.nii*"))
    return [p for p in paths if os.path.isfile(p) or not any(os.path.isdir(os.path.join(p, c)) for c in os.listdir(p))]


@pytest.mark.filterwarnings("ignore")
def test_pydicom_and_nibabel_test_corpora_read_or_are_rejected_in_one_line(tmp_path):
    """Every file (and leaf series folder) of pydicom's and nibabel's own test data either reads as
    finite slices or raises a DuiitDataError: nothing else escapes."""
    import shutil
    outcomes = {}
    for i, path in enumerate(_corpus()):
        target = path
        if os.path.isfile(path) and not path.endswith((".dcm", ".nii", ".nii.gz")):
            target = tmp_path / f"{i}-{os.path.basename(path)}.dcm"   # pydicom names some files without suffix
            shutil.copy(path, target)
        try:
            slices = read_slices(target)
            assert np.isfinite(slices).all() and slices.ndim == 3
            outcomes[os.path.basename(path)] = "read"
        except DuiitDataError as exc:
            assert "\n" not in str(exc)
            outcomes[os.path.basename(path)] = "rejected"
    assert len(outcomes) > 150 and "read" in outcomes.values()
    for folder in ("MR1", "MR2", "MR700", "CT2N"):   # mixed series / orientations in one folder
        assert outcomes[folder] == "rejected"
    assert outcomes["CT5N"] == "read"
