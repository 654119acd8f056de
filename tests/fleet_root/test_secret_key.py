"""fleet/bootstrap.py's ``load_secret_key``: the one key every server is given, from
``FLEET_SECRET_KEY``, an operator's ``FLEET_SECRET_KEY_FILE`` (never created), or the data
directory's ``secret.key`` (created by ``fleet init``)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fleet.bootstrap import NotInitialisedError, load_secret_key
from fleet.config import Settings, load_settings
from fleet.domain.errors import FleetError

KEY = b"k" * 32


def settings(tmp_path: Path, **values: str) -> Settings:
    return load_settings(environ={"FLEET_DATA_DIR": str(tmp_path / "data"), **values})


def test_a_given_file_is_read_and_wins_over_the_data_directory(tmp_path: Path) -> None:
    given = tmp_path / "shared.key"
    given.write_text(base64.b64encode(KEY).decode() + "\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret.key").write_text(base64.b64encode(b"o" * 32).decode())
    loaded = load_secret_key(settings(tmp_path, FLEET_SECRET_KEY_FILE=str(given)), create=True)
    assert loaded == KEY


def test_a_given_file_that_is_missing_is_an_error_and_never_created(tmp_path: Path) -> None:
    given = tmp_path / "absent.key"
    with pytest.raises(FleetError, match="FLEET_SECRET_KEY_FILE") as caught:
        load_secret_key(settings(tmp_path, FLEET_SECRET_KEY_FILE=str(given)), create=True)
    assert "never created" in caught.value.message
    assert not given.exists()
    assert not (tmp_path / "data" / "secret.key").exists()


@pytest.mark.parametrize("content", ["c2hvcnQ=", "x" * 5000])
def test_a_short_or_oversized_file_is_refused(tmp_path: Path, content: str) -> None:
    given = tmp_path / "bad.key"
    given.write_text(content)
    with pytest.raises(FleetError):
        load_secret_key(settings(tmp_path, FLEET_SECRET_KEY_FILE=str(given)))


def test_without_any_the_data_directory_key_is_made_only_by_init(tmp_path: Path) -> None:
    with pytest.raises(NotInitialisedError, match="FLEET_SECRET_KEY_FILE"):
        load_secret_key(settings(tmp_path))
    made = load_secret_key(settings(tmp_path), create=True)
    assert load_secret_key(settings(tmp_path)) == made
