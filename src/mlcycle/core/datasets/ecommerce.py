"""Seeded generator of e-commerce sessions for a purchase-propensity model.

Each row is a user's session on a product page; ``purchased`` says whether it ended in a
purchase. Ranking products by this propensity is the model behind "which product to
recommend to this user". The label depends on the features through a noisy logistic model
with interactions, so the task is learnable but far from separable (ROC AUC about 0.73-0.75 at 20,000 rows;
purchase rate about 18 %).

Like real data, the output has ~5 % missing cells, outliers, duplicated rows and a few
anomalous (bot-like) rows. ``drift`` > 0 shifts the feature distributions (device and
channel mix, visits, recency, prices, discounts, hour, dates a year later per unit) and
weakens or reverses parts of the label relationship (discount, e-mail, visits and recency
effects turn around; per-category effects move), which is how deployed models decay.
Measured with hist gradient boosting (then the default model) trained at drift 0 (ROC AUC
0.74 on its test split), on 5,000-row batches: drift 0 -> 0.74, 0.5 -> 0.66, 1 -> 0.59, 1.5 -> 0.47, 2 -> 0.39 (worse
than chance: the relationship reversed). A model fitted on 5,000 drift-2 rows alone reaches
about 0.62 there. ``drift=0`` output never changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEVICES = ("mobile", "desktop", "tablet")
CHANNELS = ("organic", "paid_search", "email", "social", "direct", "referral")
DEPARTMENTS = ("electronics", "fashion", "home", "beauty", "sports", "books")
SUBCATEGORIES = ("basic", "premium", "accessories", "kids", "outlet", "new")
CATEGORIES = tuple(f"{d}/{s}" for d in DEPARTMENTS for s in SUBCATEGORIES)  # 36 levels

MISSING_COLUMNS = (
    "tenure_days",
    "visits_30d",
    "days_since_last_visit",
    "basket_value",
    "discount",
    "device",
    "channel",
    "hour_of_day",
)
TARGET = "purchased"


def generate_sessions(
    n_rows: int = 20_000,
    seed: int = 42,
    drift: float = 0.0,
    *,
    missing_rate: float = 0.075,
    outlier_rate: float = 0.005,
    duplicate_rate: float = 0.01,
    anomaly_rate: float = 0.002,
) -> pd.DataFrame:
    """Return ``n_rows`` sessions (duplicates included) with a binary ``purchased`` label.

    The same ``(n_rows, seed, drift)`` always gives the same frame. ``missing_rate`` applies
    to the columns in MISSING_COLUMNS, about 5 % of all feature cells.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}")
    if drift < 0:
        raise ValueError(f"drift must be >= 0, got {drift}")
    rng = np.random.default_rng(seed)
    n_dup = int(round(n_rows * duplicate_rate))
    n = n_rows - n_dup

    device = rng.choice(DEVICES, size=n, p=_shift_probs([0.55, 0.35, 0.10], [0.2, -0.15, -0.05], drift))
    channel = rng.choice(
        CHANNELS, size=n, p=_shift_probs([0.3, 0.2, 0.12, 0.15, 0.15, 0.08], [-0.1, 0.1, -0.05, 0.1, -0.03, -0.02], drift)
    )
    # Category popularity follows a Zipf-like curve, so some levels are rare.
    popularity = 1.0 / np.arange(1, len(CATEGORIES) + 1) ** 0.8
    category = rng.choice(CATEGORIES, size=n, p=popularity / popularity.sum())

    tenure = rng.lognormal(mean=5.0, sigma=1.1, size=n).clip(0, 4000)
    visits = rng.negative_binomial(n=2, p=2 / (2 + 4.0 * (1 + 0.5 * drift)), size=n).astype(float)
    recency = rng.exponential(scale=9.0 * (1 + 0.8 * drift), size=n)
    cat_index = np.array([CATEGORIES.index(c) for c in category])
    dept_price = np.array([120.0, 45.0, 60.0, 25.0, 55.0, 15.0])[cat_index // len(SUBCATEGORIES)]
    price = dept_price * rng.lognormal(mean=0.0, sigma=0.5, size=n) * (1 + 0.35 * drift)
    has_discount = rng.random(n) < 0.4 + 0.2 * min(drift, 1.5)
    discount = np.where(has_discount, rng.uniform(0.05, 0.5, size=n), 0.0)
    basket = rng.lognormal(mean=3.4, sigma=0.9, size=n)
    hour = (rng.normal(loc=16 + 2 * drift, scale=5, size=n).round() % 24).astype(float)
    start = np.datetime64("2025-01-01") + np.timedelta64(int(365 * min(drift, 3)), "D")
    date = start + rng.integers(0, 180, size=n).astype("timedelta64[D]")

    # --- the label: a noisy logistic model with interactions --------------------------
    category_effect = np.random.default_rng(seed + 1).normal(0, 0.45, len(CATEGORIES))
    category_effect = category_effect + drift * np.random.default_rng(seed + 2).normal(0, 0.5, len(CATEGORIES))
    weekday = pd.DatetimeIndex(date).dayofweek.to_numpy()
    # Concept drift: the model's strongest signals turn around. By drift 2 frequent visitors
    # are comparison shoppers who buy elsewhere, and lapsed users (long recency) come back
    # to buy; at drift 1 both signals are gone.
    turn = min(drift, 2.0) / 2.0
    logit = (
        -3.6
        + (0.75 * (1 - 2 * turn)) * np.log1p(visits)
        + (-0.6 * (1 - 2 * turn)) * np.log1p(recency)
        + 0.18 * np.log1p(tenure)
        + (2.2 * (1 - 0.8 * min(drift, 1.25))) * discount
        - 0.35 * np.log(price / dept_price)
        + 0.25 * np.log1p(basket) * (device == "desktop")
        + np.select([device == "desktop", device == "tablet"], [0.35, 0.1], 0.0)
        + np.select(
            [channel == "email", channel == "paid_search", channel == "social", channel == "referral"],
            [0.7 * (1 - 1.2 * min(drift, 1.0)), 0.25, -0.35, 0.2],
            0.0,
        )
        + category_effect[cat_index]
        + 0.35 * np.cos((hour - 20) / 24 * 2 * np.pi)
        + 0.15 * (weekday >= 5)
        - 0.3 * drift
    )
    purchased = rng.random(n) < 1 / (1 + np.exp(-(logit + rng.normal(0, 0.4, size=n))))

    frame = pd.DataFrame(
        {
            "session_id": [f"s{seed:04d}-{i:07d}" for i in range(n)],
            "session_date": pd.to_datetime(date),
            "tenure_days": tenure.round(0),
            "visits_30d": visits,
            "days_since_last_visit": recency.round(2),
            "basket_value": basket.round(2),
            "price": price.round(2),
            "discount": discount.round(3),
            "device": device.astype(object),
            "channel": channel.astype(object),
            "product_category": category.astype(object),
            "hour_of_day": hour,
            TARGET: purchased.astype(int),
        }
    )
    _add_outliers(frame, rng, outlier_rate)
    _add_anomalies(frame, rng, anomaly_rate)
    _add_missing(frame, rng, missing_rate)
    if n_dup:
        dup_rows = frame.iloc[rng.integers(0, n, size=n_dup)]
        frame = pd.concat([frame, dup_rows], ignore_index=True)
        frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    return frame


def _shift_probs(base: list[float], direction: list[float], drift: float) -> np.ndarray:
    probs = np.asarray(base) + np.asarray(direction) * min(drift, 2.0)
    probs = np.clip(probs, 0.01, None)
    return probs / probs.sum()


def _add_outliers(frame: pd.DataFrame, rng: np.random.Generator, rate: float) -> None:
    n = len(frame)
    for col, factor in (("basket_value", 40.0), ("price", 15.0)):
        idx = rng.choice(n, size=int(n * rate), replace=False)
        frame.loc[idx, col] = (frame.loc[idx, col] * factor).round(2)


def _add_anomalies(frame: pd.DataFrame, rng: np.random.Generator, rate: float) -> None:
    """Bot-like sessions: hundreds of visits, zero recency and tenure, empty basket."""
    idx = rng.choice(len(frame), size=max(1, int(len(frame) * rate)), replace=False)
    frame.loc[idx, "visits_30d"] = rng.integers(300, 900, size=len(idx)).astype(float)
    frame.loc[idx, "days_since_last_visit"] = 0.0
    frame.loc[idx, "tenure_days"] = 0.0
    frame.loc[idx, "basket_value"] = 0.0
    frame.loc[idx, "hour_of_day"] = 3.0


def _add_missing(frame: pd.DataFrame, rng: np.random.Generator, rate: float) -> None:
    for col in MISSING_COLUMNS:
        mask = rng.random(len(frame)) < rate
        frame.loc[mask, col] = np.nan
