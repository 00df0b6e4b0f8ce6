"""scikit-learn's bundled datasets as DataFrames (shipped with the package: no download)."""

from __future__ import annotations

import pandas as pd

BUNDLED = ("breast_cancer", "wine", "diabetes")


def load_bundled(name: str, target: str = "target") -> pd.DataFrame:
    """Features plus a ``target`` column. Class labels use the dataset's class names."""
    from sklearn import datasets

    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }
    if name not in loaders:
        raise KeyError(f"unknown bundled dataset {name!r}; known: {list(BUNDLED)}")
    bunch = loaders[name](as_frame=True)
    frame = bunch.frame.rename(columns={"target": target}).copy()
    names = getattr(bunch, "target_names", None)
    if names is not None and len(names) and name != "diabetes":
        frame[target] = pd.Series(names[frame[target].to_numpy()], index=frame.index, dtype=object)
    return frame
