"""Copy the pinned front-end libraries from node_modules into static/vendor (not tracked in git)."""
from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = {
    "@xterm/xterm/lib/xterm.js": "xterm.js",
    "@xterm/xterm/css/xterm.css": "xterm.css",
    "@xterm/addon-fit/lib/addon-fit.js": "addon-fit.js",
    "asciinema-player/dist/bundle/asciinema-player.min.js": "asciinema-player.min.js",
    "asciinema-player/dist/bundle/asciinema-player.css": "asciinema-player.css",
    "chart.js/dist/chart.umd.min.js": "chart.umd.min.js",  # dashboard charts
}


def main() -> None:
    out = ROOT / "static" / "vendor"
    out.mkdir(parents=True, exist_ok=True)
    for src, dst in FILES.items():
        path = ROOT / "node_modules" / src
        if not path.exists():
            raise SystemExit(f"missing {path}: run npm ci")
        shutil.copyfile(path, out / dst)
    print(f"vendored {len(FILES)} files into {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
