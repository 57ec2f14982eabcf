import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = (".whl", ".tar.gz", ".tgz", ".zip", ".egg", ".gguf", ".pyc", ".so")


def test_no_build_artifact_or_archive_is_tracked():
    proc = subprocess.run(["git", "ls-files", "-z"], capture_output=True, cwd=ROOT)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    files = proc.stdout.decode().split("\0")
    assert not [f for f in files if f.endswith(ARTIFACTS)]
