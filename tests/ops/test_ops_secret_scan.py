"""`make secrets-scan` (part of `make lint`): the repository holds no key material, and the scan would catch
the platform's own kinds of secrets if someone committed one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from platform_assets.core import api_keys, signing

REPO = Path(__file__).resolve().parents[2]
HOOK = Path(sys.executable).parent / "detect-secrets-hook"


def scan(tmp_path: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    baseline = tmp_path / "baseline.json"
    shutil.copy(REPO / ".secrets.baseline", baseline)  # the hook rewrites line numbers in its baseline
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    tracked = [name for name in listed if name != ".secrets.baseline"]  # its hashes look like secrets
    return subprocess.run(
        [str(HOOK), "--baseline", str(baseline), *tracked, *map(str, files)], cwd=REPO, capture_output=True, text=True
    )


def test_the_repository_holds_no_key_material(tmp_path: Path) -> None:
    result = scan(tmp_path)
    assert result.returncode in (0, 3), result.stdout  # 3: only line numbers of reviewed entries moved


def test_the_platforms_secrets_are_caught(tmp_path: Path) -> None:
    api_key = tmp_path / "client_config.py"
    api_key.write_text(f'CREDIT_RISK_KEY = "{api_keys.generate_key()}"\n')
    pem = tmp_path / "signing.txt"
    pem.write_bytes(signing.private_pem(signing.generate_private_key()))
    result = scan(tmp_path, api_key, pem)
    assert result.returncode == 1
    assert f"{api_key}:1" in result.stdout and "Private Key" in result.stdout
