"""Certificates for mutual TLS to Temporal: `shielding certs generate --out DIR`.

One private certificate authority signs everything: the Temporal server's certificate (its frontend and the
links between its own services; subject alternative names `temporal`, `localhost`, 127.0.0.1 by default) and a
client certificate for each process that connects — the worker, the web service, the Web UI and the operators'
tools (admin). The server accepts only clients whose certificate this CA signed
(`TEMPORAL_TLS_REQUIRE_CLIENT_AUTH=true`).

    DIR/ca.pem  DIR/ca-key.pem           the authority (its key stays with operations: it is never mounted)
    DIR/<name>/cert.pem  DIR/<name>/key.pem   temporal, worker, web, ui, admin

DIR itself is 0700, so on the host only its owner reads it; inside DIR each identity's key is world-readable
(0644) so that a container, whatever user it runs as, can read the one key mounted into it (compose mounts
DIR/<name> and DIR/ca.pem only). ECDSA P-256, SHA-256.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shielding.settings import ConfigurationError

SERVER = "temporal"
CLIENTS = ("worker", "web", "ui", "admin")
DEFAULT_SERVER_NAMES = ("temporal", "localhost", "127.0.0.1")
CA_DAYS = 5 * 365
ORGANISATION = "ContactPoint shielding service"


@dataclass(frozen=True)
class Issued:
    name: str
    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_names(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    # A file that was already there keeps its old mode through O_CREAT: narrow it before a key is written.
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _authority(now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    name = _name("shielding Temporal CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    *,
    usages: Sequence[x509.ObjectIdentifier],
    alt_names: Sequence[str],
    now: datetime,
    days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(_alt_names(alt_names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def generate(
    out: Path,
    *,
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
    clients: Sequence[str] = CLIENTS,
    days: int = 397,
    force: bool = False,
) -> list[Issued]:
    """A new authority, the Temporal server's certificate and one client certificate per name, under `out`.

    Refuses (ConfigurationError) to overwrite an existing set unless `force`: a new authority invalidates every
    certificate the old one signed."""
    if not server_names:
        raise ConfigurationError("Give the Temporal server at least one name (--server-name).")
    if days < 1:
        raise ConfigurationError("Certificates must be valid for at least one day (--days).")
    names = [SERVER, *clients]
    if len(set(names)) != len(names) or not all(n.replace("-", "").isalnum() for n in names):
        raise ConfigurationError(f"Client names must be distinct letters, digits or '-', and not {SERVER!r}.")
    ca_pem = out / "ca.pem"
    if ca_pem.exists() and not force:
        raise ConfigurationError(
            f"{ca_pem} already exists: a new authority would invalidate every certificate it signed. "
            "Use --force to replace the whole set."
        )
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    now = datetime.now(UTC)
    ca_key, ca_cert = _authority(now)
    _write(out / "ca-key.pem", _pem_key(ca_key), 0o600)
    _write(ca_pem, _pem_cert(ca_cert), 0o644)
    issued = []
    for name in names:
        server = name == SERVER
        usages = (
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            if server
            else [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        common_name = server_names[0] if server else f"shielding-{name}"
        key, cert = _leaf(
            ca_key,
            ca_cert,
            common_name,
            usages=usages,
            alt_names=server_names if server else [common_name],
            now=now,
            days=days,
        )
        folder = out / name
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o755)
        _write(folder / "cert.pem", _pem_cert(cert), 0o644)
        _write(folder / "key.pem", _pem_key(key), 0o644)
        issued.append(Issued(name, folder / "cert.pem", folder / "key.pem"))
    return issued
