"""The browser tests' shared fixture: Debian's chromium, driven by Playwright."""

from __future__ import annotations

# One browser for the whole run, shared by every browser test module: a second Playwright
# started beside it would find the first one's event loop and refuse to run.
from tests.e2e.web.browser import chromium  # noqa: F401  (a fixture)
