"""Check that report.html renders: open it in headless Chromium, save a screenshot, and count the pixels of each
artifact's plot colour in it (every artifact draws boxes and dots in its own colour, so a plot that failed to
render leaves its colour missing).

    python -m mmcompress.report.screenshot RUN_DIR [PNG]

Exit 0 when every artifact's colour is on the screenshot, 1 when one is missing, 2 when no browser or no
report.html is found. Debian/Ubuntu: `apt-get install chromium`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MIN_PIXELS = 30  # a box or a dot of the plots is at least this many pixels of its colour


def browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def capture(page: Path, png: Path, width: int = 1100, height: int = 6000, timeout: float = 60) -> Path:
    """A screenshot of `page` (the top `height` pixels) with headless Chromium."""
    exe = browser()
    if exe is None:
        raise FileNotFoundError(f"no headless browser found (tried {', '.join(BROWSERS)}); "
                                f"install one, e.g. `apt-get install chromium`")
    with tempfile.TemporaryDirectory(prefix="mmcompress-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"{exe} wrote no screenshot (exit {done.returncode}): {done.stderr[-500:]}")
    return png


def colour_pixels(png: Path, colours: dict[str, str]) -> dict[str, int]:
    """{name: pixels of exactly that '#rrggbb' colour in the image}."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    out = {}
    for name, hexc in colours.items():
        rgb = np.array([int(hexc[i:i + 2], 16) for i in (1, 3, 5)], dtype=img.dtype)
        out[name] = int((img == rgb).all(axis=1).sum())
    return out


def check(run_dir: Path, png: Path | None = None) -> dict:
    """-> {"png", "pixels": {artifact: count}, "missing": [artifacts whose colour is not drawn], "ok"}."""
    from mmcompress.report.html import _colour

    run_dir = Path(run_dir)
    page = run_dir / "report.html"
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no report.html (run `mmcompress run RECIPE --run-dir {run_dir}` first)")
    names = list(json.loads((run_dir / "report.json").read_text())["artifacts"])
    png = capture(page, Path(png) if png else run_dir / "report.png")
    pixels = colour_pixels(png, {n: _colour(names, n) for n in names if n != "teacher"})
    missing = [n for n, c in pixels.items() if c < MIN_PIXELS]
    return {"png": str(png), "pixels": pixels, "missing": missing, "ok": not missing}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        result = check(Path(argv[0]), Path(argv[1]) if len(argv) > 1 else None)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, n in result["pixels"].items():
        print(f"{'ok  ' if n >= MIN_PIXELS else 'MISSING'}  {name}: {n} pixels of its plot colour")
    print(f"screenshot: {result['png']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
