"""Chromium, pixels: the live terminal and the watch page draw colours, the cursor, box drawing and a monospace
grid under the CSP Bastion ships, with no CSP violation (the `pages` fixture fails on any)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from browser import Geometry, close_to, find_row, geometry, ink_columns, login, view_rows, wait_screen, wait_until
from conftest import BastionApp
from test_terminal import granted_host

BACKGROUND = (0x0d, 0x11, 0x17)  # the theme's background
FOREGROUND = (0xc9, 0xd1, 0xd9)  # the theme's foreground
RED = (0xcc, 0x00, 0x00)  # xterm.js's default ANSI red (41)
INDEXED_33 = (0x00, 0x87, 0xff)  # 256-colour cube index 33: r=0, g=2 → 0x87, b=5 → 0xff
TRUECOLOR = (18, 200, 90)
CURSOR = (0xff, 0xff, 0xff)  # xterm.js's default cursor colour

# The pattern, printed by printf (box drawing as UTF-8 bytes: the host's shell may have no UTF-8 locale) so the typed line differs from what it prints:
#   row "R1": cols 3-10 red background, 16-23 colour 33, 28-35 truecolor
#   rows "BX": a box of box-drawing characters, cols 3-10
#   rows "C1"/"C2": printf '%-10s|' with narrow and wide letters: the bar is in col 13 on both
#   row "RV": cols 3-6 in reverse video
PATTERN = (r"clear; printf 'R1 \e[41m        \e[0m 256 \e[48;5;33m        \e[0m TC \e[48;2;18;200;90m        \e[0m\n"
           r"BX \xe2\x94\x8c\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x90\nBX \xe2\x94\x82 ok   \xe2\x94\x82\nBX \xe2\x94\x94\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x80\xe2\x94\x98\n"
           r"C1 %-10s|x\nC2 %-10s|x\nRV \e[7m    \e[0m\n' iii WWWWWWWWWW" "\n")


def check_pattern(image: Image.Image, geo: Geometry, rows: list[str], label: str) -> None:
    """Assert the colours, box drawing and column alignment under the cells that hold them."""
    r1 = find_row(rows, "R1  ")
    for col in (4, 7, 10):
        assert close_to(image.getpixel(geo.cell_center(col, r1)), RED), (label, "red", col, image.getpixel(geo.cell_center(col, r1)))
    for col in (16, 19, 23):
        assert close_to(image.getpixel(geo.cell_center(col, r1)), INDEXED_33), (label, "256", col, image.getpixel(geo.cell_center(col, r1)))
    for col in (28, 31, 35):
        assert close_to(image.getpixel(geo.cell_center(col, r1)), TRUECOLOR), (label, "truecolor", col, image.getpixel(geo.cell_center(col, r1)))
    # cells around the blocks keep the background: the blocks are exactly 8 cells wide
    for col in (2, 11, 15, 24, 27, 36):
        assert close_to(image.getpixel(geo.cell_center(col, r1)), BACKGROUND), (label, "background", col)

    # box drawing: the top edge is one unbroken line across cols 3..10, the sides have ink in their cells
    top = find_row(rows, "BX ┌")
    x0, y0, _, y1 = geo.cell_box(3, top)
    _, _, x1, _ = geo.cell_box(10, top)
    ink = ink_columns(image, (x0, y0, x1, y1), BACKGROUND)
    mid_from, mid_to = geo.cell_box(4, top)[0], geo.cell_box(9, top)[2]
    assert all(x in ink for x in range(mid_from, mid_to)), (label, "gap in the box's top edge", sorted(set(range(mid_from, mid_to)) - set(ink)))
    side = find_row(rows, "BX │")
    assert ink_columns(image, geo.cell_box(3, side), BACKGROUND), (label, "left side of the box not drawn")
    assert ink_columns(image, geo.cell_box(10, side), BACKGROUND), (label, "right side of the box not drawn")

    # the grid: '|' after 10 narrow letters and after 10 wide letters starts at the same x, inside cell 13
    c1, c2 = find_row(rows, "C1 iii"), find_row(rows, "C2 WWW")
    bar1 = ink_columns(image, geo.cell_box(13, c1), BACKGROUND)
    bar2 = ink_columns(image, geo.cell_box(13, c2), BACKGROUND)
    assert bar1 and bar2, (label, "no '|' drawn in column 13")
    assert abs(bar1[0] - bar2[0]) <= 1, (label, "column 13 starts at different x", bar1, bar2)
    # reverse video: the cells take the foreground colour as their background
    rv = find_row(rows, "RV ")  # the output row, after the typed command
    for col in (3, 6):
        assert close_to(image.getpixel(geo.cell_center(col, rv)), FOREGROUND), (label, "reverse", col, image.getpixel(geo.cell_center(col, rv)))
    # the wide letters fill their own cells only: nothing spills into the gap cells of C1
    assert not ink_columns(image, geo.cell_box(8, c1), BACKGROUND), (label, "ink in an empty cell")


async def wait_cursor(page, path: Path, focused: bool) -> Image.Image:
    """Screenshot until the cursor cell shows the cursor colour (it blinks while focused)."""
    async def drawn() -> Image.Image | None:
        await page.screenshot(path=str(path))
        image = Image.open(path).convert("RGB")
        geo = await geometry(page)
        x0, y0, x1, y1 = geo.cell_box(geo.cursor_x, geo.cursor_y)
        if focused:  # a filled block
            return image if close_to(image.getpixel(geo.cell_center(geo.cursor_x, geo.cursor_y)), CURSOR, 30) else None
        # unfocused: an outline around the cell
        edge = [(x, y) for x in range(x0 - 1, x1 + 1) for y in (y0 - 1, y0, y1 - 1, y1)]
        return image if any(close_to(image.getpixel(p), CURSOR, 40) for p in edge) else None
    return await wait_until(drawn, 5, f"the cursor drawn in {path.name}")


async def test_terminal_and_watch_page_pixels(bastion: BastionApp, sshd, pages, tmp_path: Path) -> None:
    _, _, ids = await granted_host(bastion, sshd)
    await bastion.services.auth.create_user("audrey", "auditor-password-1", ["auditor"], actor="test")
    user = await pages.page(1200, 800)
    await login(user, bastion.base_url, "alice", "user-password-1")
    await user.goto(f"{bastion.base_url}/terminal/{ids['host_id']}")
    await user.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    session_id = await user.text_content("#session-id")
    await user.click("#terminal")
    await user.keyboard.type(PATTERN)
    await wait_screen(user, "C2 WWWWWWWWWW|x\nRV ")

    image = await wait_cursor(user, tmp_path / "terminal.png", focused=True)
    check_pattern(image, await geometry(user), await view_rows(user), "terminal")

    auditor = await pages.page(1300, 800)
    await login(auditor, bastion.base_url, "audrey", "auditor-password-1")
    await auditor.goto(f"{bastion.base_url}/watch/{session_id}")
    await wait_screen(auditor, "C2 WWWWWWWWWW|x")  # from the screen snapshot
    await user.keyboard.type("echo after''-watch\n")
    await wait_screen(auditor, "after-watch")
    await user.keyboard.type(PATTERN)  # again, live this time
    await wait_until(lambda: _pattern_is_last(auditor), 10, "the pattern on the watch page")
    image = await wait_cursor(auditor, tmp_path / "watch.png", focused=False)
    check_pattern(image, await geometry(auditor), await view_rows(auditor), "watch")


async def _pattern_is_last(page) -> bool:
    rows = [r for r in await view_rows(page) if r.strip()]
    return len(rows) >= 3 and rows[-2].startswith("RV ") and rows[-3].startswith("C2 WWW") and "after-watch" not in "".join(rows)
