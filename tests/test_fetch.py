"""fetch: the Debian package's files, the checked download, and a user's own folder."""
import os
import shutil
import zipfile

import pytest

from conftest import make_image
from fashionclf.data import fetch as F


def test_download_is_checked_against_the_fixed_sums(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(F.SYSTEM_DIR, mirror)
    found = F.locate_fashion_mnist(tmp_path / "absent", tmp_path / "cache", mirror.as_uri() + "/")
    assert found == tmp_path / "cache"
    assert all(F.sha256(found / name) == digest for name, digest in F.FILES.items())
    # a tampered mirror is refused
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    (tmp_path / "cache" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(F.FetchError, match="wrong SHA-256"):
        F.locate_fashion_mnist(tmp_path / "absent", tmp_path / "cache", mirror.as_uri() + "/")


def test_no_package_and_no_network_says_both_ways(tmp_path):
    with pytest.raises(F.FetchError) as info:
        F.locate_fashion_mnist(tmp_path / "absent", tmp_path / "cache", "http://127.0.0.1:9/")
    assert "apt-get install dataset-fashion-mnist" in str(info.value) and "download" in str(info.value)


def test_export_puts_the_class_name_in_the_path_of_one_reproducible_archive(tmp_path):
    report = F.fetch("fashion-mnist", 2, tmp_path / "raw.zip")
    assert report["files"] == 20
    names = zipfile.ZipFile(tmp_path / "raw.zip").namelist()
    assert sorted({n.split("/")[1] for n in names}) == sorted(F.CLASSES)
    assert len([n for n in names if n.startswith("fashion-mnist/ankle_boot/train-")]) == 2
    F.fetch("fashion-mnist", 2, tmp_path / "again.zip")
    assert (tmp_path / "raw.zip").read_bytes() == (tmp_path / "again.zip").read_bytes()


def test_clean_reads_the_archive_as_it_reads_the_folder(tmp_path):
    from fashionclf.data.clean import clean
    src = tmp_path / "photos"
    for n in range(3):
        make_image(src / "bags" / f"b{n}.jpg", 0, n)
        make_image(src / "shoes" / f"s{n}.png", 1, 10 + n)
    (src / "shoes" / "empty.png").write_bytes(b"")
    F.fetch(str(src), 0, tmp_path / "raw.zip")
    from_zip = clean(tmp_path / "raw.zip", 24, 8, 10**8, tmp_path / "a", tmp_path / "a.csv")
    from_dir = clean(src, 24, 8, 10**8, tmp_path / "b", tmp_path / "b.csv")
    assert from_zip == from_dir == {"raw": 7, "kept": 6, "dropped": {"zero_bytes": 1}}
    assert (tmp_path / "a/images.npy").read_bytes() == (tmp_path / "b/images.npy").read_bytes()
    assert (tmp_path / "a/manifest.csv").read_text() == (tmp_path / "b/manifest.csv").read_text()


def test_user_folder_is_copied_untouched_and_bad_links_are_counted(tmp_path):
    src = tmp_path / "photos"
    make_image(src / "bags" / "a.jpg", 0, 1)
    os.symlink("loop2", src / "bags" / "loop1")
    os.symlink("loop1", src / "bags" / "loop2")
    os.symlink(src, src / "bags" / "parent_link")  # a folder loop: never followed
    before = sorted(os.listdir(src / "bags"))
    report = F.fetch(str(src), 0, tmp_path / "raw.zip")
    assert report["files"] == 1 and report["skipped"] == {"symlink loop or broken link": 3}
    assert zipfile.ZipFile(tmp_path / "raw.zip").read("bags/a.jpg") == (src / "bags" / "a.jpg").read_bytes()
    assert sorted(os.listdir(src / "bags")) == before


def test_missing_user_folder_is_one_clear_error(tmp_path):
    with pytest.raises(F.FetchError, match="fetch.source"):
        F.fetch(str(tmp_path / "nope"), 0, tmp_path / "raw.zip")
    assert not (tmp_path / "raw.zip").exists()
