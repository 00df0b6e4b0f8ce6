from __future__ import annotations

import pytest

from mlcycle.core.datasets import generate_sessions
from mlcycle.core.datasets.ecommerce import TARGET


@pytest.fixture(scope="module")
def sessions():
    return generate_sessions(5000, seed=3)


def test_same_seed_same_frame(sessions):
    assert generate_sessions(5000, seed=3).equals(sessions)
    assert not generate_sessions(5000, seed=4).equals(sessions)


def test_realistic_problems_are_present(sessions):
    features = sessions.drop(columns=["session_id", TARGET])
    assert 0.03 < features.isna().to_numpy().mean() < 0.07  # ~5 % missing cells
    assert sessions.duplicated().sum() >= 40  # ~1 % duplicated rows
    assert (sessions["visits_30d"] >= 300).sum() >= 5  # bot-like anomalies
    basket = sessions["basket_value"].dropna()
    assert basket.max() > 20 * basket.quantile(0.99) / 2  # outliers
    assert len(sessions) == 5000


def test_label_rate_is_realistic_and_drift_moves_it(sessions):
    rate = sessions[TARGET].mean()
    assert 0.1 < rate < 0.3
    drifted = generate_sessions(5000, seed=3, drift=2.0)
    assert drifted[TARGET].mean() < rate
    assert drifted["price"].median() > sessions["price"].median() * 1.3
    assert (drifted["device"] == "mobile").mean() > (sessions["device"] == "mobile").mean()


def test_invalid_arguments():
    with pytest.raises(ValueError):
        generate_sessions(0)
    with pytest.raises(ValueError):
        generate_sessions(10, drift=-1)
