"""The HTML report in a real headless browser (Debian's chromium, installed by `make setup`): it renders, and its
page text holds the leaderboard's numbers."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib import image
from report_fixtures import EXPECTED, write_evaluations, write_store

from freepoint_bench.report import build_leaderboard, build_report, load_results, read_evaluations, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "no headless browser (chromium) on PATH and none could be installed: `make setup` installs Debian's "
        "chromium with .ci/apt-ensure, which needs apt and root (or sudo)"
    )


def _run(browser: str, profile, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    board = build_leaderboard(load_results(write_store(tmp / "results")))
    report = build_report(board, read_evaluations(write_evaluations(tmp)), source="results")
    (html,) = write_report(report, ["html"], tmp / "out")
    return html


def test_screenshot_renders(page, tmp_path):
    browser = _browser()
    shot = tmp_path / "shot.png"
    proc = _run(browser, tmp_path / "profile", "--window-size=1400,1600", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = image.imread(shot)[..., :3]  # floats 0..1
    assert pixels.shape[:2] == (1600, 1400)
    ink = (pixels.mean(axis=2) < 0.6).mean()  # text, rules, figures
    assert 0.005 < ink < 0.5, f"page looks blank or black: {ink:.4f} of pixels dark"
    rgb = (pixels * 255).astype(np.uint32).reshape(-1, 3)
    colours = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2])
    assert colours.size > 50  # anti-aliased text, the highlighted cells and the figures, not one flat colour


def test_page_text_holds_the_numbers(page, tmp_path):
    browser = _browser()
    proc = _run(browser, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert '<table id="leaderboard">' in dom and '<table id="unsupervised">' in dom
    for cells in EXPECTED.values():
        for main, n, delta in cells.values():
            assert main in dom and n in dom and delta in dom, (main, n, delta)
    for quoted in ("40.5", "52.3", "58.3", "46.9", "56.4", "63.9", "10.7", "21.4", "37.8"):
        assert f"<td>{quoted}</td>" in dom
    assert "conflict: not averaged †" in dom and "missing" in dom
    assert dom.count("data:image/png;base64,") == 2


def test_ladder_page_renders_with_its_numbers(tmp_path):
    from report_fixtures import write_ladder_store

    browser = _browser()
    report = build_report(build_leaderboard(load_results(write_ladder_store(tmp_path / "results"))))
    (page,) = write_report(report, ["html"], tmp_path / "out")
    proc = _run(browser, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    for table in ("ladder-0", "leaderboard-linear", "leaderboard-insseg-frozen", "leaderboard-semseg",
                  "leaderboard-insseg", "per-class-iou"):
        assert f'<table id="{table}">' in dom, table
    for text in ("32.0 ± 1.7", "n=3 · Δ +10.0**", "16.7 ± 1.5", "n=3 · Δ +4.7*", "<th>mIoU</th>", "<th>allAcc</th>"):
        assert text in dom, text
    assert dom.count("data:image/png;base64,") == 3
    shot = tmp_path / "shot.png"
    proc = _run(browser, tmp_path / "profile2", "--window-size=1400,1600", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    ink = (image.imread(shot)[..., :3].mean(axis=2) < 0.6).mean()
    assert 0.005 < ink < 0.5, f"page looks blank or black: {ink:.4f} of pixels dark"
