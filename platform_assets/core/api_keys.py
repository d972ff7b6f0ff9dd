"""API keys with roles, stored only as sha256 hashes.

A key file (``CREDIT_RISK_API_KEYS_FILE``) or the env var ``CREDIT_RISK_API_KEYS`` holds::

    {"keys": [{"key_id": "3f9a1c2e", "sha256": "<hex>", "roles": ["predict"], "created_at": "...", "note": ""}]}

(a bare list of those objects is accepted too). Keys are 256-bit random tokens, so an unsalted sha256
is enough to make a leaked file useless; lookups hash the presented token and compare it with every
stored hash in constant time. Roles: ``predict`` (POST /predict), ``feedback`` (POST /feedback),
``admin`` (everything). Clients send ``Authorization: Bearer <key>``.

Rotation without a restart: ``create_key`` adds the new key, clients move to it, ``revoke_key`` removes
the old one; a running service re-reads the file within a second of each change. Changes to a file
are serialized by a lock file beside it and written atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

ROLES = ("predict", "feedback", "admin")
KEY_PREFIX = "crk_"


class KeyFileError(ValueError):
    """The key file or env var is not a valid key document."""


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    sha256: str
    roles: tuple[str, ...]
    created_at: str = ""
    note: str = ""

    def allows(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_keys(text: str, source: str) -> list[KeyRecord]:
    """Key records from a JSON document; a clear ``KeyFileError`` naming ``source`` otherwise."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{source}: not valid JSON ({exc})") from None
    entries = document.get("keys") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise KeyFileError(f'{source}: expected {{"keys": [...]}} or a list of key objects')
    records = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise KeyFileError(f"{source}: key {i} is not an object")
        digest = str(entry.get("sha256", "")).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise KeyFileError(f"{source}: key {i} needs 'sha256', the 64-hex-digit hash of the key")
        roles = entry.get("roles", [entry["role"]] if "role" in entry else [])
        if isinstance(roles, str):
            roles = [roles]
        if not roles or any(r not in ROLES for r in roles):
            raise KeyFileError(f"{source}: key {i} has roles {roles!r}; each must be one of {list(ROLES)}")
        records.append(
            KeyRecord(
                key_id=str(entry.get("key_id") or digest[:8]),
                sha256=digest,
                roles=tuple(roles),
                created_at=str(entry.get("created_at", "")),
                note=str(entry.get("note", "")),
            )
        )
    return records


class KeyStore:
    """The configured keys; the file is re-read when it changes (checked at most once a second)."""

    def __init__(self, file: Path | None = None, inline: str | None = None) -> None:
        self._file = file
        self._inline = parse_keys(inline, "CREDIT_RISK_API_KEYS") if inline else []
        self._from_file: list[KeyRecord] = []
        self._mtime: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._reload(force=True)
        if not self.records():
            logger.warning("no API keys configured: every protected endpoint will answer 401")

    def records(self) -> list[KeyRecord]:
        return self._inline + self._from_file

    def _reload(self, force: bool = False) -> None:
        if self._file is None:
            return
        now = time.monotonic()
        if not force and now - self._checked < 1.0:
            return
        with self._lock:
            self._checked = now
            try:
                mtime = self._file.stat().st_mtime
            except FileNotFoundError:
                if self._from_file or force:
                    logger.warning("API key file %s does not exist", self._file)
                self._from_file, self._mtime = [], None
                return
            if mtime == self._mtime:
                return
            try:
                self._from_file = parse_keys(self._file.read_text(), str(self._file))
                self._mtime = mtime
            except KeyFileError as exc:  # keep the last good keys; say why the new file is ignored
                logger.error("ignoring API key file: %s", exc)
                self._mtime = mtime

    def authenticate(self, token: str) -> KeyRecord | None:
        """The record whose hash matches ``token``; every stored hash is compared in constant time."""
        self._reload()
        digest = hash_key(token)
        found = None
        for record in self.records():
            if hmac.compare_digest(digest, record.sha256):
                found = record
        return found


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@contextmanager
def _locked(path: Path) -> Iterator[list[KeyRecord]]:
    """The file's records under an exclusive lock (two concurrent changes never lose one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield parse_keys(path.read_text(), str(path)) if path.exists() else []


def _write(path: Path, records: list[KeyRecord]) -> None:
    document = {"keys": [{**asdict(r), "roles": list(r.roles)} for r in records]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_key(path: Path, roles: list[str], note: str = "") -> tuple[str, KeyRecord]:
    """Add a new key to the file at ``path`` (created 0600 if absent); returns the key, shown once."""
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"roles must be among {list(ROLES)}, got {roles}")
    key = generate_key()
    digest = hash_key(key)
    record = KeyRecord(
        key_id=digest[:8], sha256=digest, roles=tuple(roles), created_at=datetime.now(UTC).isoformat(), note=note
    )
    with _locked(path) as records:
        _write(path, [*records, record])
    return key, record


def revoke_key(path: Path, key_id: str) -> KeyRecord:
    """Remove the key ``key_id`` from the file; ``KeyError`` naming it and the file when it is not there."""
    with _locked(path) as records:
        revoked = [r for r in records if r.key_id == key_id]
        if not revoked:
            raise KeyError(f"no key {key_id!r} in {path} (known: {sorted(r.key_id for r in records)})")
        _write(path, [r for r in records if r.key_id != key_id])
    return revoked[0]
