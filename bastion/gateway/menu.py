"""The gateway's host menu: the user's granted hosts by category, numbered, searchable, driven through a PTY."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..store import Host

MAX_LINE = 200


@dataclass(frozen=True)
class MenuEntry:
    """One numbered host of the menu."""

    number: int
    host: Host
    category: str


def menu_entries(hosts: list[Host], categories: dict[str, str]) -> list[MenuEntry]:
    """Hosts sorted by category then name, numbered from 1 (numbers stay the same while searching)."""
    ordered = sorted(hosts, key=lambda h: (categories.get(h.app_id, "").lower(), h.name.lower()))
    return [MenuEntry(i, h, categories.get(h.app_id, "")) for i, h in enumerate(ordered, start=1)]


def render(entries: list[MenuEntry], username: str, search: str = "") -> str:
    """The menu text (CRLF line ends, for a PTY)."""
    shown = [e for e in entries if search.lower() in e.host.name.lower() or search.lower() in e.category.lower()]
    lines = [f"Bastion: hosts for {username}" + (f" matching '{search}'" if search else "")]
    if not entries:
        lines.append("  (no hosts are granted to you; ask an admin)")
    elif not shown:
        lines.append("  (nothing matches)")
    category = None
    for entry in shown:
        if entry.category != category:
            category = entry.category
            lines.append(f"  [{category or 'no category'}]")
        lines.append(f"  {entry.number:>4}) {entry.host.name}")
    lines.append("Type a number or a host name to connect, other text to search, q to quit.")
    return "\r\n".join(lines) + "\r\n"


class HostMenu:
    """A small line editor over the menu: echoes typing, Enter decides."""

    PROMPT = b"host> "

    def __init__(self, entries: list[MenuEntry], username: str, write: Callable[[bytes], None],
                 choose: Callable[[Host], None], quit: Callable[[], None]) -> None:
        self.entries = entries
        self.username = username
        self.write = write
        self.choose = choose
        self.quit = quit
        self.line = ""
        self.done = False
        self._escape = False

    def start(self) -> None:
        self.write(render(self.entries, self.username).encode() + self.PROMPT)

    def feed(self, data: bytes) -> None:
        """Keys from the user's terminal."""
        for char in data.decode("utf-8", "replace"):
            if self.done:
                return
            if self._escape:  # skip an escape sequence (arrow keys …) up to its final letter
                if char.isalpha() or char == "~":
                    self._escape = False
                continue
            if char == "\x1b":
                self._escape = True
            elif char in "\r\n":
                self.write(b"\r\n")
                self._submit(self.line.strip())
                self.line = ""
            elif char in "\x7f\x08":
                if self.line:
                    self.line = self.line[:-1]
                    self.write(b"\x08 \x08")
            elif char == "\x03":
                self.line = ""
                self.write(b"^C\r\n" + self.PROMPT)
            elif char == "\x04" and not self.line:
                self.write(b"\r\n")
                self._quit()
            elif char.isprintable() and len(self.line) < MAX_LINE:
                self.line += char
                self.write(char.encode())

    def _submit(self, text: str) -> None:
        if text.lower() in ("q", "quit", "exit"):
            self._quit()
            return
        entry = None
        if text.isdigit():
            entry = next((e for e in self.entries if e.number == int(text)), None)
        else:
            entry = next((e for e in self.entries if e.host.name.lower() == text.lower()), None)
        if entry is not None:
            self.done = True
            self.write(f"connecting to {entry.host.name} …\r\n".encode())
            self.choose(entry.host)
            return
        if text.isdigit():
            self.write(f"no host has number {text}\r\n".encode())
        self.write(render(self.entries, self.username, text).encode() + self.PROMPT)

    def _quit(self) -> None:
        self.done = True
        self.quit()
