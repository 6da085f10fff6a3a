"""Shared fixtures: paths to the bundled assets and the shared evaluation media, engines loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
EVAL_DIR = ROOT.parent / "shared" / "eval"
SAMPLE_PORTRAIT = ASSETS / "sample_portrait.jpg"
SAMPLE_VOICE = ASSETS / "sample_voice.flac"


def screenshot_path(name: str, scratch: Path) -> Path:
    """Where a browser test writes its screenshot: docs/images/ when AVATAR_UPDATE_SCREENSHOTS=1
    (to refresh the pictures in the docs), else `scratch`, so a test run never dirties the tree."""
    import os

    folder = ROOT / "docs" / "images" if os.environ.get("AVATAR_UPDATE_SCREENSHOTS") == "1" else scratch
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def eval_file(relative: str) -> Path:
    """A file from ../shared/eval, or skip the test where that folder is not checked out."""
    path = EVAL_DIR / relative
    if not path.is_file():
        pytest.skip(f"evaluation media not available: {path}")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("avatar-cache")


@pytest.fixture(scope="session")
def landmarker():
    from lipsync.face_landmarker import FaceLandmarker

    with FaceLandmarker() as engine:
        yield engine


@pytest.fixture(scope="session")
def sample_assets(cache_dir, landmarker):
    from lipsync.avatar_assets import prepare_avatar

    return prepare_avatar(SAMPLE_PORTRAIT, size_px=512, cache_dir=cache_dir, landmarker=landmarker)


@pytest.fixture(scope="session")
def sample_renderer(sample_assets):
    from lipsync.procedural_renderer import ProceduralRenderer

    return ProceduralRenderer(sample_assets, seed=1)


# --- tests that need ../shared/eval ---------------------------------------------------------------
# Where the evaluation media is missing, those tests skip, so a checkout without it still runs the
# rest. That must not pass unnoticed: the summary says how many were skipped and why, and with
# AVATAR_REQUIRE_EVAL=1 (set it on a CI machine that has ../shared/eval) each one fails instead.
EVAL_SKIP_MARKERS = ("evaluation media not available", "eval media not found", "eval video missing")


def _is_eval_skip(report) -> bool:
    return report.skipped and any(marker in str(report.longrepr) for marker in EVAL_SKIP_MARKERS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    import os

    outcome = yield
    report = outcome.get_result()
    if os.environ.get("AVATAR_REQUIRE_EVAL") == "1" and _is_eval_skip(report):
        report.outcome = "failed"
        report.longrepr = f"AVATAR_REQUIRE_EVAL=1 but the evaluation media is missing: {report.longrepr}"


def pytest_terminal_summary(terminalreporter):
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if _is_eval_skip(r)]
    if skipped:
        terminalreporter.write_sep(
            "!",
            f"{len(skipped)} tests skipped: evaluation media not found at {EVAL_DIR}",
            red=True,
            bold=True,
        )
        terminalreporter.write_line("set AVATAR_REQUIRE_EVAL=1 to make them fail (CI with ../shared/eval)")
