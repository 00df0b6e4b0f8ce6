"""Secrets out of everything mlcycle logs or prints.

Pure (no mlflow, no hydra). One rule, used at every place a URI or the config leaves the
process (root-run params, ``config.yaml``, log lines, CLI output):

* the password in a URI's user info: ``postgresql+psycopg2://bob:s3cret@db/mlflow`` →
  ``postgresql+psycopg2://bob:***@db/mlflow`` (the user name stays: it is not a secret and it
  tells you which account a run used);
* secret-looking query parameters (``password``, ``token``, ``sig``, ``X-Amz-Credential``, ...)
  and libpq-style ``password=...`` key/value pairs;
* the whole value of a config key whose name says it is a secret (``*.password``, ``*.token``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MASK = "***"

# Words that make a key, a query parameter or a config field a secret when the name holds
# one of them as a word (``db_password``, ``X-Amz-Credential``, ``access_token``), and
# names that are secrets only on their own (``?sig=`` of a SAS URL, ``?key=`` of an API).
_SECRET_WORDS = {
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
    "signature",
}
_SECRET_NAMES = {"sig", "key", "auth", "api_key", "access_key", "secret_key", "private_key"}

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_URI_PARTS = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#]*)(?P<rest>.*)$", re.S
)
_QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&#;]+)=(?P<value>[^&#;]*)")
_KEYWORD_PAIR = re.compile(
    r"(?i)\b(?P<name>password|passwd|pwd)(?P<eq>\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;&]+)"
)


def is_secret_name(name: str) -> bool:
    """Whether a key or parameter name says its value is a secret."""
    last = name.strip().lower().replace("-", "_").rsplit(".", 1)[-1]
    return last in _SECRET_NAMES or any(word in _SECRET_WORDS for word in last.split("_"))


def mask_uri(uri: str) -> str:
    """The URI with its password and secret query values replaced by ``***``."""
    parts = _URI_PARTS.match(uri)
    if parts is None:
        return uri
    authority, rest = parts["authority"], parts["rest"]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            authority = f"{user}:{MASK}@{host}"
    rest = _QUERY_PAIR.sub(
        lambda m: (
            f"{m['sep']}{m['name']}={MASK}" if is_secret_name(m["name"]) and m["value"] else m[0]
        ),
        rest,
    )
    return f"{parts['scheme']}{authority}{rest}"


def mask_text(text: str) -> str:
    """Any text (a log line, an error message) with every URI in it masked."""
    text = _URI.sub(lambda m: mask_uri(m[0]), text)
    return _KEYWORD_PAIR.sub(lambda m: f"{m['name']}{m['eq']}{MASK}", text)


def mask_values(values: Mapping[str, str]) -> dict[str, str]:
    """A flat mapping (the config as MLflow params) with secrets masked."""
    return {
        k: (MASK if is_secret_name(k) and v not in ("", "None") else mask_text(v))
        for k, v in values.items()
    }


def mask_tree(obj):
    """A nested config (dicts, lists, scalars) with secrets masked, for YAML artifacts."""
    if isinstance(obj, Mapping):
        return {
            k: (
                MASK
                if is_secret_name(str(k)) and v not in (None, "") and not isinstance(v, Mapping)
                else mask_tree(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [mask_tree(v) for v in obj]
    if isinstance(obj, str):
        return mask_text(obj)
    return obj
