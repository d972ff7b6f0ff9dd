"""Ed25519 keys and signatures (``cryptography``): PEM files, key ids, detached base64 signatures.

Key files: ``signing_key.pem`` (PKCS#8 private key, mode 0600) and ``verify_key.pem`` (public key,
SubjectPublicKeyInfo). A key id is ``ed25519:`` plus the first 16 hex digits of the sha256 of the raw
32-byte public key; manifests record the id of the key that signed them, so verifying with another
key fails with "wrong key" rather than a bare "bad signature".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_KEY_FILE: Final = "signing_key.pem"
PUBLIC_KEY_FILE: Final = "verify_key.pem"
SIGNATURE_BYTES: Final = 64


class SigningKeyError(ValueError):
    """A key is missing, unreadable or not an Ed25519 key."""


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes, source: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM bytes; ``source`` names where they came from in errors."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise SigningKeyError(f"{source}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{source}: a {type(key).__name__}, expected an Ed25519 private key")
    return key


def load_public_key(pem: bytes, source: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes; ``source`` names where they came from in errors."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise SigningKeyError(f"{source}: not a PEM public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{source}: a {type(key).__name__}, expected an Ed25519 public key")
    return key


def _read_key_file(path: str | Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise SigningKeyError(
            f"{what} file {path} does not exist: create a key pair with "
            "`python -m platform_assets.governance.keys create --out-dir DIR` and point the setting at it"
        )
    return path.read_bytes()


def load_private_key_file(path: str | Path) -> Ed25519PrivateKey:
    return load_private_key(_read_key_file(path, "signing (private) key"), str(path))


def load_public_key_file(path: str | Path) -> Ed25519PublicKey:
    return load_public_key(_read_key_file(path, "verify (public) key"), str(path))


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """A detached signature of ``data``, base64 (ASCII) as stored in ``manifest.sig``."""
    return base64.b64encode(key.sign(data))


def decode_signature(signature: bytes | str) -> bytes:
    """The 64 raw signature bytes of a base64 signature; ``ValueError`` when it is not one."""
    text = signature.decode("ascii", errors="replace") if isinstance(signature, bytes) else signature
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signature is not base64") from None
    if len(raw) != SIGNATURE_BYTES:
        raise ValueError(f"the signature has {len(raw)} bytes, an Ed25519 signature has {SIGNATURE_BYTES}")
    return raw


def signature_matches(key: Ed25519PublicKey, data: bytes, raw_signature: bytes) -> bool:
    try:
        key.verify(raw_signature, data)
    except InvalidSignature:
        return False
    return True


def write_key_pair(out_dir: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Create a fresh key pair as ``signing_key.pem`` (mode 0600) and ``verify_key.pem`` in ``out_dir``.

    Refuses to replace existing files unless ``overwrite``: a lost signing key cannot be recovered, and
    models signed with it would no longer verify against a new public key.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / PRIVATE_KEY_FILE, out / PUBLIC_KEY_FILE
    if not overwrite:
        existing = [str(p) for p in (private_path, public_path) if p.exists()]
        if existing:
            raise FileExistsError(f"{', '.join(existing)} already exist(s): refusing to replace a key (use --force)")
    key = generate_private_key()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(private_path, flags, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem(key))
    os.chmod(private_path, 0o600)  # O_CREAT's mode is masked by the umask, and ignored for an existing file
    public_path.write_bytes(public_pem(key.public_key()))
    return private_path, public_path
