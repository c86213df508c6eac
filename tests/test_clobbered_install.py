"""Runs in the nox cell where two distributions write the same ``autogen`` folder: doctor must flag it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("AGENTSESSION_EXPECT_CLOBBERED") != "1",
        reason="only meaningful in the nox cell that clobbers the autogen folder",
    ),
    pytest.mark.slow,
]


def test_doctor_flags_the_clobbered_folder_and_names_both_distributions() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentsession", "doctor", "--no-round-trip", "--store", "memory://"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    assert "pyautogen" in result.stdout and "autogen-agentchat" in result.stdout
    assert "pip uninstall" in result.stdout


def test_the_engine_refuses_to_drive_it() -> None:
    from agentsession import ClobberedInstall
    from agentsession.families import check_clobbered

    with pytest.raises(ClobberedInstall, match="pyautogen"):
        check_clobbered("autogen")
