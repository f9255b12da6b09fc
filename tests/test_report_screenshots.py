"""The report pages, opened in a real browser: headless Chromium renders each, and none is blank or
broken.

Each page is opened once, as a copy with a small script that runs after the page's ``load``
event and paints its verdict as a bar at the top (every ``<img>`` decoded: ``complete`` with a
``naturalWidth``; enough pictures; enough visible text); the screenshot must show that bar green
and be neither blank nor a flat colour below it. On a failure a second run (``--dump-dom``) prints
the details. Two broken pages (an empty body, an undecodable picture) show that the checks fail.

Skips where no Chromium is installed (Debian: ``apt-get install -y chromium``; ``.ci/run`` installs
it when it can). ``CATSDOGS_SCREENSHOTS=DIR`` keeps the screenshots there, to look at.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests import report_samples

CHROMIUM = next(
    (p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs headless Chromium (Debian: apt-get install -y chromium); not installed here",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
CHECKER = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 40));
  const text = document.body.innerText.trim().length;
  const verdict = {images: images.length, broken: broken, text: text};
  const pre = document.createElement('pre');
  pre.id = 'catsdogs-check';
  pre.textContent = JSON.stringify(verdict);
  document.body.appendChild(pre);
  const bar = document.createElement('div');
  const colour = broken.length ? 'rgb(255,0,0)' : images.length < MIN_IMAGES ? 'rgb(255,0,255)'
    : text < MIN_TEXT ? 'rgb(0,0,255)' : 'rgb(0,255,0)';
  bar.style.cssText = 'position:fixed;top:0;left:0;width:100%;height:6px;z-index:99999;background:' + colour;
  document.body.appendChild(bar);
});</script>"""
BAR = 6  # the checker's verdict bar, in pixels at the top of the screenshot
VERDICTS = {
    (0, 255, 0): "",
    (255, 0, 0): "a picture does not decode",
    (255, 0, 255): "too few pictures",
    (0, 0, 255): "too little text",
}


def _chromium(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="catsdogs-chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": profile},
        )


def _probe(page: Path, min_images: int, min_text: int) -> Path:
    """A copy of ``page`` with the checker, in the same folder (so relative links still work)."""
    script = CHECKER.replace("MIN_IMAGES", str(min_images)).replace("MIN_TEXT", str(min_text))
    probe = page.with_name(f".{page.stem}-probe.html")
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", script + "</body>", 1), encoding="utf-8")
    return probe


def dom_check(page: Path) -> dict:
    """What the page is to the browser after ``load``: how many pictures, which are broken, text."""
    probe = _probe(page, 0, 0)
    done = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    probe.unlink()
    match = re.search(r'<pre id="catsdogs-check">(.*?)</pre>', done.stdout, re.S)
    assert match, (
        f"Chromium printed no verdict for {page} (rc {done.returncode}): {done.stderr[-500:]}"
    )
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 1600) -> np.ndarray:
    """The page's top ``width`` x ``height`` pixels as rendered by Chromium, as RGB."""
    from PIL import Image

    done = _chromium(
        "--virtual-time-budget=10000",
        f"--screenshot={out}",
        f"--window-size={width},{height}",
        page.as_uri(),
    )
    assert out.is_file(), f"no screenshot of {page} (rc {done.returncode}): {done.stderr[-500:]}"
    keep = os.environ.get("CATSDOGS_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / out.name)
    with Image.open(io.BytesIO(out.read_bytes())) as image:
        return np.asarray(image.convert("RGB"))


def problems(page: Path, out: Path, min_images: int, min_text: int) -> list[str]:
    """Why the page is blank or broken in Chromium (empty: it is neither); one browser run."""
    probe = _probe(page, min_images, min_text)
    try:
        pixels = screenshot(probe, out)
    finally:
        probe.unlink()
    found = []
    verdict = VERDICTS.get(tuple(int(v) for v in pixels[BAR // 2, pixels.shape[1] // 2]))
    if verdict is None:
        found.append("the checker did not run (no verdict bar): the page failed to load")
    elif verdict:
        found.append(f"{verdict}: {dom_check(page)}")  # a second run, for the details
    content = pixels[BAR:]
    inked = float(np.mean(content.min(axis=2) < 235))  # share of pixels that are not white-ish
    colours = len(np.unique(content.reshape(-1, 3) // 16, axis=0))
    if inked < 0.005:
        found.append(f"the screenshot is blank ({100 * inked:.2f}% of its pixels are not white)")
    if colours < 20:
        found.append(f"the screenshot is flat ({colours} colours)")
    return found


def test_the_run_page_renders_with_its_drawings(tmp_path: Path) -> None:
    from catsdogs.pipelines.run_summary import summarize

    run_dir = tmp_path / "run"
    seconds = report_samples.fake_run(run_dir, tmp_path / "champion")
    summary = {"recipe_scratch_epochs": 100, "budget_scratch_epochs": 8}
    summarize(
        run_dir, seconds, wall_seconds=400.0, champion_uri=str(tmp_path / "champion"), **summary
    )
    assert problems(run_dir / "index.html", tmp_path / "run-page.png", 0, 800) == []


def test_the_evaluation_report_renders_every_figure(tmp_path: Path) -> None:
    page = tmp_path / "evaluation.html"
    page.write_text(report_samples.evaluation_page(), encoding="utf-8")
    assert problems(page, tmp_path / "evaluation-report.png", 4 + 4, 800) == []


def test_the_activation_page_renders_every_picture(tmp_path: Path) -> None:
    page = tmp_path / "activations.html"
    page.write_text(report_samples.activation_page(), encoding="utf-8")
    assert problems(page, tmp_path / "activation-page.png", 1 + 2 * 3, 500) == []


def test_the_training_curves_page_renders(tmp_path: Path) -> None:
    page = tmp_path / "curves.html"
    page.write_text(report_samples.curves_page(), encoding="utf-8")
    assert problems(page, tmp_path / "curves-page.png", 1, 20) == []


def test_a_blank_or_broken_page_fails_the_checks(tmp_path: Path) -> None:
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body></body></html>")
    found = problems(blank, tmp_path / "blank.png", 0, 20)
    assert any("screenshot is blank" in p for p in found)
    assert any("too little text" in p for p in found)
    broken = tmp_path / "broken.html"
    page = report_samples.curves_page()
    broken.write_text(re.sub(r"base64,[A-Za-z0-9+/=]{200}", "base64,AAAA", page, count=1))
    found = problems(broken, tmp_path / "broken.png", 1, 20)
    assert "a picture does not decode" in found[0]
    assert "'broken': ['training curves']" in found[0]
