"""Secrets are masked in URIs, text and config, and nothing else is touched."""

from __future__ import annotations

import pytest

from mlcycle.core.masking import (
    MASK,
    is_secret_name,
    mask_override,
    mask_text,
    mask_tree,
    mask_uri,
    mask_values,
)


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        (
            "postgresql+psycopg2://bob:s3cret@db:5432/mlflow",
            "postgresql+psycopg2://bob:***@db:5432/mlflow",
        ),
        (
            "postgresql+psycopg2://bob:p@ss@db/mlflow",
            "postgresql+psycopg2://bob:***@db/mlflow",
        ),  # '@' in it
        ("http://alice:pw@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
        ("mysql://u:@host/db", "mysql://u:***@host/db"),
        (
            "postgresql://h/db?sslmode=require&password=x",
            "postgresql://h/db?sslmode=require&password=***",
        ),
        (
            "https://a.blob.core.windows.net/c?sv=1&sig=ab%3D&se=2",
            "https://a.blob.core.windows.net/c?sv=1&sig=***&se=2",
        ),
        (
            "s3://b/k?X-Amz-Credential=AKIA&X-Amz-Signature=ff&x=1",
            "s3://b/k?X-Amz-Credential=***&X-Amz-Signature=***&x=1",
        ),
        (
            "https://api.example.com/v1?access_token=abc#frag",
            "https://api.example.com/v1?access_token=***#frag",
        ),
    ],
)
def test_mask_uri_hides_passwords_and_secret_query_values(uri, masked):
    assert mask_uri(uri) == masked
    assert mask_uri(masked) == masked  # idempotent


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:5000",
        "sqlite:////tmp/store/mlflow.db",
        "postgresql+psycopg2://mlcycle@127.0.0.1:5433/mlflow",  # user name only: not a secret
        "file:///tmp/mlruns",
        "models:/mlcycle-ecommerce@champion",
        "https://example.com/search?q=token&page=2",  # 'token' as a value, not a name
    ],
)
def test_mask_uri_leaves_uris_without_secrets_alone(uri):
    assert mask_uri(uri) == uri


def test_mask_text_masks_every_uri_and_libpq_passwords_in_a_message():
    text = "could not reach postgresql://a:hunter2@h/db (host=h password=hunter3 user=a); also http://x:hunter4@h2/p."
    masked = mask_text(text)
    assert "hunter" not in masked
    assert masked.count(MASK) == 3
    assert "user=a" in masked and "postgresql://a:" in masked and "host=h" in masked


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("tune.storage_password", True),
        ("password", True),
        ("mlflow.tags.api_key", True),
        ("X-Amz-Credential", True),
        ("access_token", True),
        ("sig", True),
        ("tune.n_trials", False),
        ("mlflow.tracking_uri", False),
        ("features.max_onehot_cardinality", False),
        ("registry.model_name", False),
        ("data.path", False),
    ],
)
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_mask_values_and_tree_mask_config_values_and_keys():
    flat = {
        "mlflow.tracking_uri": "http://u:hunter2@h:5000",
        "mlflow.tags.api_key": "k-123",
        "tune.storage_password": "None",  # unset: nothing to hide, keep it readable
        "tune.n_trials": "3",
    }
    assert mask_values(flat) == {
        "mlflow.tracking_uri": f"http://u:{MASK}@h:5000",
        "mlflow.tags.api_key": MASK,
        "tune.storage_password": "None",
        "tune.n_trials": "3",
    }
    tree = {
        "mlflow": {"tracking_uri": "postgresql://u:hunter2@h/db", "tags": {"token": "t"}},
        "stages": ["ingest"],
        "seed": 42,
    }
    assert mask_tree(tree) == {
        "mlflow": {"tracking_uri": f"postgresql://u:{MASK}@h/db", "tags": {"token": MASK}},
        "stages": ["ingest"],
        "seed": 42,
    }


def test_mask_text_masks_each_of_several_uris_run_together():
    # Hydra's override_dirname: overrides joined by commas, two URLs with passwords
    text = "a=1,mlflow.tracking_uri=postgresql+psycopg2://u:first@h:5432/db,b=2,tune.storage=mysql://v:second@g/s"
    masked = mask_text(text)
    assert masked == "a=1,mlflow.tracking_uri=postgresql+psycopg2://u:***@h:5432/db,b=2,tune.storage=mysql://v:***@g/s"
    assert mask_text("https://x/?next=https://y/&token=abc") == "https://x/?next=https://y/&token=***"


@pytest.mark.parametrize(
    ("override", "masked"),
    [
        ("mlflow.tracking_uri=postgresql://u:pw@h/db", "mlflow.tracking_uri=postgresql://u:***@h/db"),
        ("+mlflow.tags.api_token=abc", "+mlflow.tags.api_token=***"),
        ("++db.password=x=y", "++db.password=***"),
        ("tune.n_trials=5", "tune.n_trials=5"),
        ("+registry.lock.postgres_uri=null", "+registry.lock.postgres_uri=null"),
    ],
)
def test_mask_override_hides_the_value_of_a_secret_key_and_secrets_in_any_value(override, masked):
    assert mask_override(override) == masked
