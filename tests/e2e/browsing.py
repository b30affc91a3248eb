"""Shared browser plumbing for the page tests: Debian's Chromium through Playwright, every console
error and uncaught page error collected (a test fails on any), and screenshots kept as artifacts
under var/artifacts/screenshots/ (SCREENSHOT_DIR overrides), one folder per test."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connections
from playwright.sync_api import Page, sync_playwright

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}


def screenshot_dir(test_name: str) -> Path:
    root = Path(os.environ.get("SCREENSHOT_DIR") or Path(settings.BASE_DIR) / "var" / "artifacts" / "screenshots")
    folder = root / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Browser:
    page: Page
    folder: Path
    errors: list[str] = field(default_factory=list)

    def shoot(self, name: str) -> Path:
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def new_page(self, viewport: dict) -> Page:
        page = self.page.context.browser.new_page(viewport=viewport)
        watch(page, self.errors)
        return page


# htmx reports a request cut short by leaving the page (a poll in flight) on the console; failed
# responses are recorded from the network below, so these lines carry nothing more.
NAVIGATION_ABORTS = ("htmx:sendAbort", "htmx:afterRequest")


def _console_error(message) -> bool:
    return message.type == "error" and not message.text.startswith(NAVIGATION_ABORTS)


def watch(page: Page, errors: list[str]) -> None:
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text} ({message.location.get('url', '')})")
            if _console_error(message)
            else None
        ),
    )
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    # The console names no address for a failed load: record which one it was.
    page.on(
        "response",
        lambda response: errors.append(f"{response.status} {response.url}") if response.status >= 400 else None,
    )


@contextmanager
def browser_session(test_name: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = chromium.new_page(viewport=DESKTOP)
        session = Browser(page=page, folder=screenshot_dir(test_name))
        watch(page, session.errors)
        try:
            yield session
        finally:
            chromium.close()
            connections.close_all()  # ORM calls made while Playwright ran used their own connection


def log_in(page: Page, base_url: str, email: str, password: str = "demo12345") -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.click("form button[type=submit]")
    page.wait_for_load_state()
