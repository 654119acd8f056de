"""The shipped TLS listener block works once uncommented, and our clients speak mqtts://."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.mqtt.broker_url import parse_broker_url
from fleet.mqtt.dynsec import DynsecAdmin
from fleet.mqtt.errors import BrokerUnavailableError
from tests.support.mosquitto import LOOPBACK, Mosquitto, TlsFiles

pytestmark = pytest.mark.e2e
VALIDITY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _tls_files(directory: Path) -> TlsFiles:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fleet test CA"))
        .issuer_name(_name("fleet test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - VALIDITY)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(LOOPBACK))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - VALIDITY)
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return TlsFiles(
        cafile=_write_pem(directory / "ca.crt", ca_cert.public_bytes(pem)),
        certfile=_write_pem(directory / "server.crt", cert.public_bytes(pem)),
        keyfile=_write_pem(
            directory / "server.key",
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ),
    )


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tls=_tls_files(tmp_path)) as running:
        yield running


def test_admin_over_tls(tls_broker: Mosquitto) -> None:
    assert tls_broker.tls is not None
    address = parse_broker_url(
        f"mqtts://{LOOPBACK}:{tls_broker.tls_port}", ca_file=str(tls_broker.tls.cafile)
    )
    login = (tls_broker.admin_username, tls_broker.admin_password)
    with DynsecAdmin(address, *login) as admin:
        assert tls_broker.admin_username in admin.list_clients()


def test_plain_mqtt_to_the_tls_port_gets_nowhere(
    tls_broker: Mosquitto, fast_reconnect: dict[str, float]
) -> None:
    address = parse_broker_url(f"mqtt://{LOOPBACK}:{tls_broker.tls_port}")
    login = (tls_broker.admin_username, tls_broker.admin_password)
    admin = DynsecAdmin(address, *login, **fast_reconnect)
    with pytest.raises(BrokerUnavailableError):
        admin.start(timeout_s=0.5)
