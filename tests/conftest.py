"""Shared test fixtures: the repository root and the public challenge list the kit ships in data/."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHALLENGE_LIST = ROOT / "data" / "CVPR_2022_NAS_Track1_test.json"


@pytest.fixture(scope="session")
def challenge_list_path():
    """Path of the challenge's 45,000-code list (shipped with the kit: a missing file fails, never skips)."""
    assert CHALLENGE_LIST.is_file(), f"{CHALLENGE_LIST} is missing: the kit ships it (git checkout -- data/)"
    return CHALLENGE_LIST


@pytest.fixture(scope="session")
def repo_root():
    return ROOT
