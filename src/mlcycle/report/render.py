"""Turn the collected sections into ONE self-contained HTML page with Jinja2.

Pure: no mlflow, no hydra. ONE Jinja environment for every page: the run report
(``templates/report.html.j2``, one block per section) and the monitoring page
(``monitoring.html.j2``) both extend ``base.html.j2`` (the style) and share
``_macros.html.j2``; values are HTML-escaped (autoescape), styles are inline, images are data
URIs, and ``check_self_contained`` refuses a page that would fetch anything.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

TEMPLATE = "report.html.j2"

# Attributes whose value a browser fetches or navigates to; elements that load by themselves.
_URL_ATTRS = frozenset({"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "cite", "ping"})
_LOADING_TAGS = frozenset({"script", "link", "iframe", "frame", "object", "embed", "base", "applet"})
_CSS_URL = re.compile(r"""url\(\s*["']?([^"')\s]*)|@import""", re.I)


class NotSelfContained(ValueError):
    """The rendered page would load something from outside itself."""


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _LOADING_TAGS:
            self.found.append(f"<{tag}>")
        if tag == "meta" and any(k == "http-equiv" for k, _ in attrs):
            self.found.append("<meta http-equiv>")
        self._in_style = tag == "style"
        for key, value in attrs:
            value = (value or "").strip()
            if key in _URL_ATTRS and not value.startswith(("data:", "#")):
                self.found.append(f"{key}={value}")
            if key == "style":
                self._css(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css(data)

    def _css(self, text: str) -> None:
        for match in _CSS_URL.finditer(text):
            url = match.group(1)
            if url is None or not url.startswith("data:"):
                self.found.append(match.group(0))


def external_references(html: str) -> list[str]:
    """Everything in ``html`` a browser would fetch or navigate to, other than ``data:`` URIs
    and in-page ``#anchors``: URL attributes, CSS ``url()``/``@import``, and elements that
    load by themselves (script, link, iframe, ...). Text content is not looked at."""
    parser = _References()
    parser.feed(html)
    parser.close()
    return parser.found


def check_self_contained(html: str) -> str:
    if bad := external_references(html):
        raise NotSelfContained(f"report would fetch {bad[:3]}")
    return html


# --------------------------------------------------------------------------- filters
def fmt_number(value: Any, digits: int = 4) -> str:
    """Integers with thousands separators, other numbers with ``digits`` decimals."""
    if value is None:
        return "–"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.{digits - 1}e}"
    return f"{value:,.{digits}f}"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(value, 60)
    if minutes < 60:
        return f"{int(minutes)} min {seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes)} min"


def fmt_percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * float(value):.{digits}f} %"


def fmt_time(ms: int | None) -> str:
    """A run timestamp (ms since the epoch) in UTC."""
    if not ms:
        return "–"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def exact(value: Any) -> str:
    """The value as logged, for ``data-value`` attributes (the displayed number is rounded)."""
    return repr(float(value)) if isinstance(value, int | float) else str(value)


def environment():
    from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("mlcycle.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=fmt_number, seconds=fmt_seconds, percent=fmt_percent, when=fmt_time, exact=exact)
    return env


def render_page(template: str, context: dict[str, Any]) -> str:
    """``templates/<template>`` with ``context``; raises if the page is not self-contained."""
    return check_self_contained(environment().get_template(template).render(**context))


def render_html(context: dict[str, Any]) -> str:
    """The report page for ``context`` (see ``collect.collect``); raises if not self-contained."""
    return render_page(TEMPLATE, context)
