"""Chromium helpers for page tests: a guard that fails on what a user would see as broken (console errors,
uncaught exceptions, CSP violations, failed requests), login, terminal screen access and pixel sampling."""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

# Reports every CSP violation to the test, also those Chromium prints only as a warning (report-only, or
# attribute styles): the listener is installed before any page script runs.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__bastionReport(`CSP ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile || location.pathname}:${e.lineNumber}: ${(e.sample || "").slice(0, 80)}`);
});
"""


@dataclass
class PageGuard:
    """Collects the problems of every page of one browser context; `check()` fails the test on any."""

    problems: list[str] = field(default_factory=list)
    allowed: list[tuple[str, int]] = field(default_factory=list)  # (URL pattern, HTTP status) a test expects

    def expect_status(self, url_pattern: str, status: int) -> None:
        """Declare a response the test provokes on purpose (a 403 page, a refused form post)."""
        self.allowed.append((url_pattern, status))

    def _allowed(self, url: str, status: int) -> bool:
        return any(re.search(p, url) and s == status for p, s in self.allowed)

    async def attach(self, ctx: Any) -> None:
        await ctx.expose_function("__bastionReport", lambda text: self.problems.append(str(text)))
        await ctx.add_init_script(CSP_LISTENER)
        for page in ctx.pages:
            self._watch(page)
        ctx.on("page", self._watch)

    def _watch(self, page: Any) -> None:
        page.on("pageerror", lambda e: self.problems.append(f"uncaught {e} on {page.url}"))
        page.on("console", lambda m: self._console(page, m))
        page.on("requestfailed", lambda r: self._failed(page, r))
        page.on("response", lambda r: self._response(r))

    def _console(self, page: Any, msg: Any) -> None:
        if msg.type != "error":
            return
        # a 4xx/5xx is judged by its URL in _response (a test may expect it); Chromium's matching console
        # line does not name the URL in its text
        if msg.text.startswith("Failed to load resource: the server responded with a status of"):
            return
        self.problems.append(f"console error on {page.url}: {msg.text}")

    def _failed(self, page: Any, request: Any) -> None:
        failure = request.failure or ""
        # ERR_ABORTED is the browser itself cancelling (the page navigated on or closed, e.g. a favicon still
        # loading); a server or policy failure has its own code (ERR_CONNECTION_*, ERR_BLOCKED_BY_CSP, ...)
        if "ERR_ABORTED" in failure:
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and not self._allowed(response.url, response.status):
            self.problems.append(f"HTTP {response.status} for {response.request.method} {response.url}")

    def check(self) -> None:
        """Fail with every problem seen so far."""
        assert not self.problems, "browser problems:\n" + "\n".join(self.problems)


class Pages:
    """Opens guarded browser contexts; the fixture closes them and fails the test on any problem."""

    def __init__(self, browser: Any, tmp_path: Path) -> None:
        self.browser = browser
        self.tmp_path = tmp_path
        self.guard = PageGuard()
        self._contexts: list[Any] = []

    async def context(self, width: int = 1280, height: int = 900, **kwargs: Any) -> Any:
        ctx = await self.browser.new_context(viewport={"width": width, "height": height}, **kwargs)
        await self.guard.attach(ctx)
        self._contexts.append(ctx)
        return ctx

    async def page(self, width: int = 1280, height: int = 900, **kwargs: Any) -> Any:
        """A new page in a new guarded context."""
        return await (await self.context(width, height, **kwargs)).new_page()

    def expect_status(self, url_pattern: str, status: int) -> None:
        self.guard.expect_status(url_pattern, status)

    def shot(self, name: str) -> str:
        return str(self.tmp_path / name)

    async def close(self) -> None:
        for ctx in self._contexts:
            await ctx.close()


async def wait_until(predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def login(page: Any, base: str, username: str, password: str) -> None:
    await page.goto(base + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/")


# ---- the terminal on a page ------------------------------------------------------------------------------
SCREEN_JS = """() => { const b = window.bastionTerm.buffer.active; let s = '';
  for (let i = 0; i < b.length; i++) { s += b.getLine(i).translateToString(true) + '\\n'; } return s; }"""

# Where xterm.js draws: the screen element's page position and the cell size its renderer uses.
GEOMETRY_JS = """() => { const t = window.bastionTerm; const d = t._core._renderService.dimensions.css.cell;
  const r = t.element.querySelector('.xterm-screen').getBoundingClientRect();
  const b = t.buffer.active;
  return {left: r.left, top: r.top, cellWidth: d.width, cellHeight: d.height, cols: t.cols, rows: t.rows,
          viewportY: b.viewportY, cursorX: b.cursorX, cursorY: b.cursorY, baseY: b.baseY}; }"""

# Visible rows (viewport-relative index, text).
VIEW_ROWS_JS = """() => { const t = window.bastionTerm; const b = t.buffer.active; const rows = [];
  for (let y = 0; y < t.rows; y++) { const l = b.getLine(b.viewportY + y); rows.push(l ? l.translateToString(true) : ''); }
  return rows; }"""


async def screen_text(page: Any) -> str:
    return await page.evaluate(SCREEN_JS)


async def wait_screen(page: Any, needle: str, timeout: float = 15) -> str:
    async def seen() -> str | None:
        text = await screen_text(page)
        return text if needle in text else None
    try:
        return await wait_until(seen, timeout, f"{needle!r} on screen")
    except AssertionError:
        raise AssertionError(f"{needle!r} not on screen:\n{await screen_text(page)}") from None


@dataclass
class Geometry:
    """Cell geometry of a page's xterm.js, in CSS pixels (screenshots are taken at device scale 1)."""

    left: float
    top: float
    cell_width: float
    cell_height: float
    cols: int
    rows: int
    cursor_x: int
    cursor_y: int

    def cell_box(self, col: int, row: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of a cell, inclusive-exclusive, shrunk to whole pixels inside it."""
        x0 = self.left + col * self.cell_width
        y0 = self.top + row * self.cell_height
        return (int(x0 + 0.999), int(y0 + 0.999), int(x0 + self.cell_width), int(y0 + self.cell_height))

    def cell_center(self, col: int, row: int) -> tuple[int, int]:
        return (int(self.left + (col + 0.5) * self.cell_width), int(self.top + (row + 0.5) * self.cell_height))


async def geometry(page: Any) -> Geometry:
    g = await page.evaluate(GEOMETRY_JS)
    assert g["cellWidth"] > 0 and g["cellHeight"] > 0, g
    return Geometry(g["left"], g["top"], g["cellWidth"], g["cellHeight"], g["cols"], g["rows"],
                    g["cursorX"], g["cursorY"] + g["baseY"] - g["viewportY"])


async def view_rows(page: Any) -> list[str]:
    return await page.evaluate(VIEW_ROWS_JS)


def find_row(rows: list[str], needle: str) -> int:
    """Viewport row index of the last visible row containing needle."""
    hits = [i for i, r in enumerate(rows) if needle in r]
    assert hits, f"{needle!r} not in visible rows:\n" + "\n".join(rows)
    return hits[-1]


def close_to(rgb: tuple[int, ...], want: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb[:3], want))


def ink_columns(image: Any, box: tuple[int, int, int, int], background: tuple[int, int, int]) -> list[int]:
    """x positions inside box where some pixel differs clearly from the background (glyph ink)."""
    x0, y0, x1, y1 = box
    xs = []
    for x in range(x0, x1):
        if any(not close_to(image.getpixel((x, y)), background, 40) for y in range(y0, y1)):
            xs.append(x)
    return xs


async def wait_prompt(page: Any, timeout: float = 15) -> None:
    """Wait until the shell shows a prompt on the cursor's row (keys typed earlier may race the shell's start)."""
    async def at_prompt() -> bool:
        g = await geometry(page)
        rows = await view_rows(page)
        line = rows[g.cursor_y][:g.cursor_x] if 0 <= g.cursor_y < len(rows) else ""
        return line.rstrip().endswith(("$", "#"))
    await wait_until(at_prompt, timeout, "a shell prompt")
