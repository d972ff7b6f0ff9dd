"""Certificates for mutual TLS on one machine: ``python -m platform_assets.deploy.tls create --out DIR``.

Writes a CA and, signed by it, a server certificate for ``127.0.0.1``/``localhost`` and a client
certificate, as ``DIR/service/`` and ``DIR/client/`` in the layout of ``core.service_tls`` (``ca.crt``,
``tls.crt``, ``tls.key``; keys 0600). For a cluster, cert-manager issues the same files (k8s/README.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from platform_assets.core.service_tls import CA_FILE, CERT_FILE, KEY_FILE

Key = ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: Key, issuer: str, issuer_key: Key, *, ca: bool, usage: list[x509.ObjectIdentifier],
                 hosts: list[str], days: int) -> x509.Certificate:  # fmt: skip
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, ca: x509.Certificate, cert: x509.Certificate, key: Key) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CA_FILE).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(directory / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)


def create(out: Path, hosts: list[str] | None = None, client: str = "platform", days: int = 365) -> tuple[Path, Path]:
    """A CA, a server and a client certificate under ``out``; returns the service's and the client's directory."""
    hosts = hosts or ["127.0.0.1", "localhost"]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("credit-risk platform CA", ca_key, "credit-risk platform CA", ca_key, ca=True, usage=[],
                      hosts=[], days=days)  # fmt: skip
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = _certificate("credit-risk-service", server_key, "credit-risk platform CA", ca_key, ca=False,
                          usage=[ExtendedKeyUsageOID.SERVER_AUTH], hosts=hosts, days=days)  # fmt: skip
    client_cert = _certificate(client, client_key, "credit-risk platform CA", ca_key, ca=False,
                               usage=[ExtendedKeyUsageOID.CLIENT_AUTH], hosts=[], days=days)  # fmt: skip
    _write(out / "service", ca, server, server_key)
    _write(out / "client", ca, client_cert, client_key)
    return out / "service", out / "client"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.deploy.tls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("create", help="a CA, a server and a client certificate")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--host", action="append", help="server name or IP (repeat); default 127.0.0.1, localhost")
    make.add_argument("--client", default="platform", help="the client certificate's common name")
    args = parser.parse_args(argv)
    service, client = create(args.out, args.host, args.client)
    print(f"service: {service}\nclient:  {client}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
