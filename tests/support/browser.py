"""Debian's Chromium, driven by Playwright (browsers cannot be downloaded here), and console helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Nothing reaches out: no updates, no sync, no QUIC probing, no first-run pages.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium (the system's /usr/bin/chromium), closed on exit."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, base_url: str, key: str) -> None:
    """Sign in to the console at `base_url` with `key` through its form."""
    page.goto(f"{base_url}/console/")
    page.fill("#key", key)
    page.click("button[type=submit]")



def numbers_shown(html: str, numbers: list[str]) -> set[str]:
    """Which of `numbers` (E.164) a page's HTML holds in full, with or without its +."""
    return {number for number in numbers if number.lstrip("+") in html}
