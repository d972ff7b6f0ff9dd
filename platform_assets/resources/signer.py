"""The key that signs model manifests, and the key that verifies them.

Private key, first found: the PEM text in the env var named by ``private_key_env``
(``PLATFORM_SIGNING_KEY``), else the file ``private_key_file`` (``PLATFORM_SIGNING_KEY_FILE``).
Public key: ``public_key_file`` (``PLATFORM_VERIFY_KEY_FILE``).

In the ``local`` environment only, when no private key is configured, a demo key pair is created
under ``demo_key_dir`` (``$PLATFORM_HOME/keys``) on first use and reused afterwards, and its public
half verifies. In ``staging`` and ``prod`` a missing key is an error: signing needs a configured
private key and verifying a configured public key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import dagster as dg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field

from platform_assets.core import signing
from platform_assets.core.environment import Environment

logger = logging.getLogger(__name__)


class ModelSigner(dg.ConfigurableResource["ModelSigner"]):
    """Ed25519 keys for model manifests (the private key itself never appears in the run config)."""

    private_key_file: str | None = Field(default=None, description="PEM private key file (PLATFORM_SIGNING_KEY_FILE).")
    private_key_env: str = Field(
        default="PLATFORM_SIGNING_KEY", description="Name of the env var that may hold the private key PEM text."
    )
    public_key_file: str | None = Field(default=None, description="PEM public key file (PLATFORM_VERIFY_KEY_FILE).")
    demo_key_dir: str | None = Field(
        default=None, description="Local environment only: where a demo key pair is created when none is configured."
    )
    environment: str = Field(default="local", description="local | staging | prod (PLATFORM_ENV).")

    def _is_local(self) -> bool:
        return Environment(self.environment) is Environment.LOCAL

    def _demo_dir(self) -> Path | None:
        return Path(self.demo_key_dir) if self._is_local() and self.demo_key_dir else None

    def _configured_private_key(self) -> Ed25519PrivateKey | None:
        pem = os.environ.get(self.private_key_env)
        if pem:
            return signing.load_private_key(pem.encode("utf-8"), f"${self.private_key_env}")
        if self.private_key_file:
            return signing.load_private_key_file(self.private_key_file)
        return None

    def signing_key(self, log: Any = None) -> Ed25519PrivateKey:
        """The private key; in ``local`` with nothing configured, the demo key (created on first use)."""
        key = self._configured_private_key()
        if key is not None:
            return key
        demo = self._demo_dir()
        if demo is None:
            raise signing.SigningKeyError(
                f"no manifest signing key configured in the {self.environment!r} environment: set "
                f"PLATFORM_SIGNING_KEY_FILE (or ${self.private_key_env}) to an Ed25519 private key; create one with "
                "`python -m platform_assets.governance.keys create --out-dir DIR`"
            )
        private_path = demo / signing.PRIVATE_KEY_FILE
        if not private_path.is_file():
            try:
                signing.write_key_pair(demo)
            except FileExistsError:
                pass  # another process created it first: use theirs
            else:
                (log or logger).warning(
                    f"no signing key configured: created a LOCAL DEMO key pair in {demo} "
                    f"(key id {signing.key_id(signing.load_private_key_file(private_path))}); "
                    "configure PLATFORM_SIGNING_KEY_FILE / PLATFORM_VERIFY_KEY_FILE outside local development"
                )
        return signing.load_private_key_file(private_path)

    def verify_key(self) -> Ed25519PublicKey:
        """The public key that verifies manifests (never creates a key)."""
        if self.public_key_file:
            return signing.load_public_key_file(self.public_key_file)
        if not self._is_local():
            raise signing.SigningKeyError(
                f"no manifest verify key configured in the {self.environment!r} environment: set "
                "PLATFORM_VERIFY_KEY_FILE to the Ed25519 public key of the signing key"
            )
        configured = self._configured_private_key()
        if configured is not None:
            return configured.public_key()
        demo = self._demo_dir()
        if demo is not None and (demo / signing.PUBLIC_KEY_FILE).is_file():
            return signing.load_public_key_file(demo / signing.PUBLIC_KEY_FILE)
        raise signing.SigningKeyError(
            "no manifest verify key: set PLATFORM_VERIFY_KEY_FILE, or materialize model_manifest once so the local "
            f"demo key pair is created in {demo}"
        )

    def key_source(self) -> str:
        """Where the signing key comes from, for metadata (no secret in it)."""
        if os.environ.get(self.private_key_env):
            return f"env ${self.private_key_env}"
        if self.private_key_file:
            return f"file {self.private_key_file}"
        demo = self._demo_dir()
        return f"local demo key in {demo}" if demo else "none configured"
