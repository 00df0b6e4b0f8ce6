"""Secrets out of everything mlcycle logs or prints.

Pure (no mlflow, no hydra). One rule, used at every place a URI or the config leaves the
process (root-run params, ``config.yaml``, log lines, CLI output, Hydra's record of a run
and its overrides):

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

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_URI_END = re.compile(r"[\s'\"<>`]")
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
    return _replace(uri, _uri_secrets(uri), MASK)


def mask_text(text: str) -> str:
    """Any text (a log line, an error message) with every URI in it masked."""
    return _replace(text, secret_spans(text), MASK)


def mask_override(override: str) -> str:
    """A Hydra override ``key=value``: the whole value when the key names a secret
    (``+db.password=x``), else its secrets as in any text."""
    return _replace(override, override_secret_spans(override), MASK)


def secret_spans(text: str) -> list[tuple[int, int]]:
    """Where the secrets are in ``text`` (start, end): passwords and secret query values of
    every URI in it, and ``password=...`` pairs. Sorted, not overlapping."""
    spans = [(start + a, start + b) for start, uri in _uris(text) for a, b in _uri_secrets(uri)]
    spans += [m.span("value") for m in _KEYWORD_PAIR.finditer(text)]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def override_secret_spans(override: str) -> list[tuple[int, int]]:
    """``secret_spans`` of a Hydra override, where a key named as a secret hides its value."""
    key, eq, value = override.partition("=")
    if eq and value and is_secret_name(key.lstrip("+~")):
        return [(len(key) + 1, len(override))]
    return secret_spans(override)


def _uris(text: str) -> list[tuple[int, str]]:
    """Each URI in a text, with where it starts. A URI ends at white space, a quote, or where
    the next one starts (``a=postgresql://u:p@h/db,b=mysql://u:q@h/db``, Hydra's
    ``override_dirname``, holds two)."""
    starts = [m.start() for m in _SCHEME.finditer(text)]
    found: list[tuple[int, str]] = []
    for i, start in enumerate(starts):
        following = starts[i + 1] if i + 1 < len(starts) else len(text)
        end = _URI_END.search(text, start, following)
        found.append((start, text[start:end.start() if end else following]))
    return found


def _uri_secrets(uri: str) -> list[tuple[int, int]]:
    parts = _URI_PARTS.match(uri)
    if parts is None:
        return []
    spans = []
    authority = parts["authority"]
    if "@" in authority:
        userinfo = authority.rsplit("@", 1)[0]
        if ":" in userinfo:
            spans.append((parts.start("authority") + userinfo.index(":") + 1, parts.start("authority") + len(userinfo)))
    offset = parts.start("rest")
    spans += [
        (offset + m.start("value"), offset + m.end("value"))
        for m in _QUERY_PAIR.finditer(parts["rest"])
        if is_secret_name(m["name"]) and m["value"]
    ]
    return spans


def _replace(text: str, spans: list[tuple[int, int]], replacement: str) -> str:
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], replacement]
        last = end
    return "".join([*out, text[last:]])


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
