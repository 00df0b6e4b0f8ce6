"""Headless Chromium for the tests that look at pages the way a reader does (Debian's
package; `.ci/run` installs it). Every call gets its own profile, so nothing a page stored
(the MLflow UI keeps its view preference in local storage) carries over."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Chromium not installed: `apt-get install -y chromium` (.ci/run installs it)"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
]
