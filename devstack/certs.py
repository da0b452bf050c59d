"""The local Cosmos DB server's TLS certificate: a development CA of the state directory's own.

`ensure_certificate(state_dir)` makes, once per state directory, a small certificate authority and
a server certificate it signs for ``localhost``, ``127.0.0.1`` and ``::1``, and writes them as PEM:
``cosmos-ca.pem`` (the CA certificate: what clients trust, the app's ``COSMOS_CA_CERT``),
``cosmos-cert.pem`` and ``cosmos-key.pem`` (what ``cosmos_server.js`` serves; in identity mode
Azurite and the Web PubSub emulator serve the same pair, and ``STORAGE_CA_CERT`` /
``WEBPUBSUB_CA_CERT`` name the same CA). The CA's private
key is never written: once the server certificate is signed nothing else can be, so trusting
``cosmos-ca.pem`` trusts this one local server and nothing more. Later calls reuse the files while
they are complete and valid, and make a new set otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "cosmos-ca.pem"
CERT_FILE = "cosmos-cert.pem"
KEY_FILE = "cosmos-key.pem"

DNS_NAMES = ("localhost",)
IP_ADDRESSES = ("127.0.0.1", "::1")
VALID_DAYS = 3650
# A set this close to expiry is replaced instead of reused.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class DevCertificate:
    ca: Path  # the CA certificate clients verify with
    cert: Path  # the server certificate
    key: Path  # the server's private key

    @classmethod
    def in_dir(cls, state_dir: Path) -> DevCertificate:
        return cls(state_dir / CA_FILE, state_dir / CERT_FILE, state_dir / KEY_FILE)


def ensure_certificate(state_dir: Path) -> DevCertificate:
    """The state directory's certificate files, made if missing, incomplete or expiring."""
    files = DevCertificate.in_dir(state_dir)
    if not _usable(files):
        state_dir.mkdir(parents=True, exist_ok=True)
        _write_new(files)
    return files


def _usable(files: DevCertificate) -> bool:
    try:
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    now = dt.datetime.now(dt.UTC)
    return (
        key.public_key() == cert.public_key()
        and set(DNS_NAMES) <= set(names.get_values_for_type(x509.DNSName))
        and {ipaddress.ip_address(a) for a in IP_ADDRESSES}
        <= set(names.get_values_for_type(x509.IPAddress))
        and min(ca.not_valid_after_utc, cert.not_valid_after_utc) - now > RENEW_BEFORE
    )


def _write_new(files: DevCertificate) -> None:
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "swarm devstack"),
            x509.NameAttribute(NameOID.COMMON_NAME, "swarm devstack local CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in DNS_NAMES]
                + [x509.IPAddress(ipaddress.ip_address(a)) for a in IP_ADDRESSES]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    # The key first and the CA last: a reader that sees the new CA sees the new server files.
    _write_atomic(
        files.key,
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        mode=0o600,
    )
    _write_atomic(files.cert, server.public_bytes(pem))
    _write_atomic(files.ca, ca.public_bytes(pem))


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def served_by(host: str, port: int, ca: Path, timeout: float = 1.0) -> bool | None:
    """Whether the TLS server on host:port proves itself with a certificate ``ca`` issued.

    True when the handshake verifies (chain and host name), False when the server answers with
    another certificate, None when no TLS server answers there."""
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError):
        return False
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False
    except (OSError, ssl.SSLError):
        return None
