"""Shared test fixtures: the repository root and the public challenge list (read in place, never copied)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHALLENGE_LIST = ROOT.parent / "shared" / "data" / "CVPR_2022_NAS_Track1_test.json"


@pytest.fixture(scope="session")
def challenge_list_path():
    """Path of the challenge's 45,000-code list; skips the test when the data is not checked out beside the repo."""
    if not CHALLENGE_LIST.is_file():
        pytest.skip(f"challenge list not found at {CHALLENGE_LIST} (expected ../shared/data/ beside the repo root)")
    return CHALLENGE_LIST


@pytest.fixture(scope="session")
def repo_root():
    return ROOT
