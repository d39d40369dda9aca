"""fetch: the Debian package's files, the checked download, and a user's own folder."""
import os
import shutil

import pytest

from conftest import make_image
from fashionclf import fetch as F


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


def test_export_puts_the_class_name_in_the_path(tmp_path):
    report = F.export_fashion_mnist(F.SYSTEM_DIR, tmp_path, per_class=2)
    assert report["files"] == 20
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir()) == sorted(F.CLASSES)
    assert len(list((tmp_path / "fashion-mnist" / "ankle_boot").glob("train-*.png"))) == 2


def test_user_folder_is_copied_untouched_and_bad_links_are_counted(tmp_path):
    src = tmp_path / "photos"
    make_image(src / "bags" / "a.jpg", 0, 1)
    os.symlink("loop2", src / "bags" / "loop1")
    os.symlink("loop1", src / "bags" / "loop2")
    os.symlink(src, src / "bags" / "parent_link")  # a folder loop: never followed
    before = sorted(os.listdir(src / "bags"))
    report = F.fetch(str(src), 0, tmp_path / "raw")
    assert report["files"] == 1 and report["skipped"] == {"symlink loop or broken link": 3}
    assert (tmp_path / "raw" / "bags" / "a.jpg").read_bytes() == (src / "bags" / "a.jpg").read_bytes()
    assert sorted(os.listdir(src / "bags")) == before


def test_missing_user_folder_is_one_clear_error(tmp_path):
    with pytest.raises(F.FetchError, match="fetch.source"):
        F.fetch(str(tmp_path / "nope"), 0, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
