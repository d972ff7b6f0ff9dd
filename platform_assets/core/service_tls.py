"""Mutual TLS between the platform and its model service: which files, and how each side uses them.

One directory holds the PEM files, named as cert-manager names a TLS Secret's keys, so a mounted
Secret works as it is:

============  ==============================================================================
file          what
============  ==============================================================================
``ca.crt``    the CA that signed both certificates; the service accepts clients it signed and
              the clients accept a server it signed
``tls.crt``   this side's certificate (the service's in the service's directory, a client's
``tls.key``   in a client's) and its private key
============  ==============================================================================

The service requires a client certificate (``CERT_REQUIRED``) whenever TLS is on: a client without
one, or with one from another CA, fails the handshake before any HTTP is read.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final

CA_FILE: Final = "ca.crt"
CERT_FILE: Final = "tls.crt"
KEY_FILE: Final = "tls.key"


class TLSFilesError(ValueError):
    """A TLS directory lacks a file or holds one that does not load; the message names it."""


@dataclass(frozen=True)
class TLSFiles:
    """One side's mutual-TLS material: ``directory`` with ``ca.crt``, ``tls.crt`` and ``tls.key``."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / CA_FILE

    @property
    def cert(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE

    def check(self) -> TLSFiles:
        missing = [str(path) for path in (self.ca, self.cert, self.key) if not path.is_file()]
        if missing:
            raise TLSFilesError(f"TLS directory {self.directory}: missing {', '.join(missing)}")
        return self

    @cached_property
    def client_context(self) -> ssl.SSLContext:
        """What a platform client connects with: verifies the server against ``ca.crt``, presents ``tls.crt``."""
        self.check()
        try:
            context = ssl.create_default_context(cafile=str(self.ca))
            context.load_cert_chain(str(self.cert), str(self.key))
        except (ssl.SSLError, OSError) as error:
            raise TLSFilesError(f"TLS directory {self.directory}: {error}") from None
        return context

    def bentoml_ssl(self) -> dict[str, Any]:
        """BentoML's ``ssl`` service config for a server that requires client certificates from ``ca.crt``."""
        self.check()
        return {
            "enabled": True,
            "certfile": str(self.cert),
            "keyfile": str(self.key),
            "ca_certs": str(self.ca),
            "cert_reqs": int(ssl.CERT_REQUIRED),
        }


def verify(files: TLSFiles | None) -> ssl.SSLContext | bool:
    """The ``verify`` argument of an httpx call to the service: the client context, or plain HTTP's default."""
    return files.client_context if files is not None else True


def scheme(files: TLSFiles | None) -> str:
    return "https" if files is not None else "http"
