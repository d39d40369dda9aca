"""Label audit: images whose given label held-out predictions contradict (confident learning,
cleanlab), listed for a reviewer in the format of data/corrections.csv: training images by their
out-of-fold predictions, calibration images by the fold ensemble's."""
from __future__ import annotations

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from ..core.scoring import probabilities_of

SUSPECT_COLUMNS = ["path", "category", "given", "label_quality", "split"]


def per_image(oof: pd.DataFrame, categories) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """One row per source image: its augmented variants and oversampled copies (always in the same
    fold) are averaged. Returns the paths, the given labels as indices and the probabilities."""
    probs = pd.DataFrame(probabilities_of(oof, categories), columns=list(categories))
    probs["path"], probs["actual"] = oof["path"].to_numpy(), oof["actual"].to_numpy()
    grouped = probs.groupby("path", sort=True)
    given = grouped["actual"].first()
    mean = grouped[list(categories)].mean()
    index = {c: i for i, c in enumerate(categories)}
    return given.index.to_series(), given.map(index).to_numpy(), mean.to_numpy()


def suspect_labels(held_out: pd.DataFrame, categories, split: str = "training") -> pd.DataFrame:
    """Likely mislabelled images of ``held_out`` predictions, most suspect first: path, the
    suggested category (the prediction), the given label, cleanlab's label quality (0 = surely
    wrong, 1 = surely right) and ``split``."""
    paths, given, probs = per_image(held_out, categories)
    if len(np.unique(given)) < 2:
        return pd.DataFrame(columns=SUSPECT_COLUMNS)
    issues = find_label_issues(given, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(given, probs)
    names = np.asarray(categories)
    return pd.DataFrame({"path": paths.to_numpy()[issues], "category": names[probs[issues].argmax(1)],
                         "given": names[given[issues]], "label_quality": quality[issues].round(6),
                         "split": split}, columns=SUSPECT_COLUMNS)
