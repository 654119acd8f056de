"""Tables of valid and invalid inputs: default device ids, image references, configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_agent.commands.default_id import default_device_id
from device_agent.protocol.device_id import is_valid_device_id
from device_agent.pull.images import ImageRef, InvalidImage, parse_image
from device_agent.state.config import AgentConfig, ConfigError, load_config, parse_config

REPO_ROOT = Path(__file__).resolve().parents[3]
LOGIN = "registry.example:5000"
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("hostname", "machine_id", "expected"),
    [
        ("raspberrypi", "0123456789abcdef", "raspberrypi-"),
        ("Kitchen_Pi.local", "0123456789abcdef", "kitchen-pi-local-"),
        ("---", "0123456789abcdef", "device-"),
        ("x" * 80, "0123456789abcdef", "x" * 33 + "-"),
        ("raspberrypi", None, "raspberrypi"),
        ("pi", None, "device-pi"),
        ("", None, "device"),
        ("é", None, "device"),
    ],
)
def test_default_device_ids_are_valid(
    tmp_path: Path, hostname: str, machine_id: str | None, expected: str
) -> None:
    machine_file = tmp_path / "machine-id"
    if machine_id is not None:
        machine_file.write_text(machine_id + "\n")
    device_id = default_device_id(machine_file, hostname)
    assert is_valid_device_id(device_id), device_id
    assert device_id.startswith(expected)
    if machine_id is not None:
        assert machine_id not in device_id  # only a hash of it
        assert len(device_id.rsplit("-", 1)[1]) == 12


def test_different_machines_get_different_ids(tmp_path: Path) -> None:
    ids = set()
    for n in range(5):
        (tmp_path / "id").write_text(f"machine-{n}")
        ids.add(default_device_id(tmp_path / "id", "raspberrypi"))
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("samples/app", ImageRef("samples/app", "latest")),
        ("samples/app:1.0", ImageRef("samples/app", "1.0")),
        (f"samples/app@{DIGEST}", ImageRef("samples/app", None, DIGEST)),
        (f"{LOGIN}/samples/app:v2", ImageRef("samples/app", "v2")),
        ("a/b/c-d_e.f:tag_1.2-x", ImageRef("a/b/c-d_e.f", "tag_1.2-x")),
    ],
)
def test_valid_images(name: str, expected: ImageRef) -> None:
    assert parse_image(name, LOGIN) == expected


@pytest.mark.parametrize(
    "name",
    [
        "Samples/App",
        "other.example/samples/app",
        "localhost/app",
        "samples/app@sha512:" + "a" * 128,
        "samples/app@sha256:abc",
        "samples/app:-bad",
        "samples//app",
        "",
        "samples/app:" + "x" * 200,
    ],
)
def test_invalid_images(name: str) -> None:
    with pytest.raises(InvalidImage):
        parse_image(name, LOGIN)


def test_image_names() -> None:
    ref = parse_image("samples/app:1.0", LOGIN)
    assert ref.full_name(LOGIN) == f"{LOGIN}/samples/app:1.0"
    assert ref.layout_name == "samples+app" and ref.layout_ref == "1.0"
    pinned = parse_image(f"samples/app@{DIGEST}", LOGIN)
    assert pinned.reference == DIGEST and pinned.layout_ref == DIGEST.replace(":", "-")


def test_the_shipped_example_configuration_loads() -> None:
    config = load_config(REPO_ROOT / "deploy" / "agent" / "agent.toml")
    assert config.pull.backend in ("builtin", "skopeo", "docker", "podman")
    assert config.pull.images


def test_json_configuration_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"pull": {"images": ["a/b:1"], "backend": "skopeo"}}))
    config = load_config(path)
    assert config.pull.images == ("a/b:1",) and config.pull.backend == "skopeo"
    assert config.mqtt == AgentConfig().mqtt
    assert parse_config({}) == AgentConfig()


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"pull": {"imagse": []}}, "unknown key(s) in pull: imagse"),
        ({"pull": {"backend": "containerd"}}, "pull.backend must be one of"),
        ({"pull": {"interval": 1}}, "pull.interval must be a number >= 10"),
        ({"pull": {"interval": True}}, "pull.interval must be a number"),
        ({"pull": {"images": "a/b"}}, "pull.images must be a list"),
        ({"pull": {"images": ["a/b"] * 51}}, "at most 50 images"),
        ({"pull": {"tls_verify": "no"}}, "pull.tls_verify must be true or false"),
        ({"mqtt": {"reconnect_min": 10, "reconnect_max": 1}}, "mqtt.reconnect_max must be"),
        ({"log_level": "loud"}, "log_level must be one of"),
        ({"extra": 1}, "unknown key(s) in the configuration"),
        ([], "the configuration must be a table"),
    ],
)
def test_invalid_configuration(document: object, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert words in str(caught.value)


def test_unreadable_configuration_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[pull\n")
    with pytest.raises(ConfigError, match="is not valid toml"):
        load_config(broken)
