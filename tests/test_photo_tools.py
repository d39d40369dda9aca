"""tools/garment_crop_ids.py and tools/real_photo_folders.py on a tiny git repository laid out as the
Clothing Co-Parsing one: photos, a label list and a label per pixel."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["null", "bag", "coat", "purse", "skin", "shoes"]


def street_photo_repo(repo: Path, photos: int) -> None:
    """Photos of 60x90 px. Each has a coat (rows 10-50, columns 10-40), shoes too thin to keep
    (4 px tall), skin, and in even photos a purse (rows 60-80, columns 40-56)."""
    (repo / "photos").mkdir(parents=True)
    (repo / "annotations" / "pixel-level").mkdir(parents=True)
    cells = np.empty((1, len(LABELS)), dtype=object)
    for i, name in enumerate(LABELS):
        cells[0, i] = np.array([name])
    savemat(repo / "label_list.mat", {"label_list": cells})
    for n in range(1, photos + 1):
        mask = np.zeros((90, 60), np.uint8)
        mask[10:50, 10:40] = LABELS.index("coat")
        mask[52:60, 20:30] = LABELS.index("skin")
        mask[84:88, 5:55] = LABELS.index("shoes")
        if n % 2 == 0:
            mask[60:80, 40:56] = LABELS.index("purse")
        savemat(repo / "annotations" / "pixel-level" / f"{n:04d}.mat", {"groundtruth": mask})
        Image.fromarray(np.full((90, 60, 3), 20 * n, np.uint8)).save(repo / "photos" / f"{n:04d}.jpg")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "photos"],
                   check=True)


def test_garment_crops_are_split_by_photo_and_cropped_to_their_box(tmp_path):
    repo = tmp_path / "ccp"
    street_photo_repo(repo, photos=10)
    ids = tmp_path / "ids.csv"
    subprocess.run([sys.executable, ROOT / "tools" / "garment_crop_ids.py", repo, ids, "--top", "5", "--min-side",
                    "8", "--unseen-share", "0.3", "--merge", "purse=bag"], check=True, capture_output=True)
    rows = list(csv.DictReader(ids.open()))
    assert {row["category"] for row in rows} == {"coat", "bag"}  # shoes too thin; skin never; purse renamed
    assert sum(row["category"] == "coat" for row in rows) == 10
    assert sum(row["category"] == "bag" for row in rows) == 5
    roles = {}
    for row in rows:
        assert roles.setdefault(row["id"], row["role"]) == row["role"]  # a photo's crops share a role
    assert sorted(roles.values()).count("unseen") == 3
    coat = next(row for row in rows if row["category"] == "coat")
    assert coat["box"] == "7 6 43 54"  # the coat's 30x40 px box plus a 10% margin on each side

    out = tmp_path / "folders"
    subprocess.run([sys.executable, ROOT / "tools" / "real_photo_folders.py", ids, repo, out, "--path",
                    "photos/{id}.jpg"], check=True, capture_output=True)
    crop = out / coat["role"] / "coat" / f"{coat['id']}.jpg"
    assert Image.open(crop).size == (36, 48)
    assert len(list(out.glob("*/*/*.jpg"))) == len(rows)
