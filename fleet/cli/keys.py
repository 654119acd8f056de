"""Server-host commands for registry token signing: the key ring and the registry's config."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fleet.cli.base import with_example
from fleet.cli.host import build_services, load_settings
from fleet.registry_auth.recheck import RING_CHECK_INTERVAL_S

if TYPE_CHECKING:
    from fleet.services import Services


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _iso_ms(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _audit(services: Services, action: str, kid: str, **detail: object) -> None:
    """Keep the key operation in the audit log, as a change made on the server host."""
    from fleet.cli.server import LOCAL_ACTOR
    from fleet.services.context import audit

    with services.ctx.db.session() as s:
        audit(s, services.ctx, LOCAL_ACTOR, action, kid, **detail)


def _print_ring(services: Services) -> None:
    for entry in services.signing.ring.entries:
        click.echo(
            f"{entry.key.kid}  signs from {_iso(entry.signing_from)}  "
            f"retires {_iso(entry.retire_after)}"
        )


@click.group("keys")
def keys() -> None:
    """Registry token signing keys (run on the server host)."""


@keys.command(
    "list", help=with_example("Show the signing keys and their schedule.", "  fleet keys list")
)
def list_keys() -> None:
    _print_ring(build_services(load_settings()))


@keys.command(
    "rotate",
    help=with_example(
        "Add a new signing key. It is published at once (bundle and JWKS) and signs after the "
        f"publish delay. Every server sharing this key ring rechecks it every "
        f"{RING_CHECK_INTERVAL_S:g} s, so the new key signs everywhere from the end of the delay, "
        f"or {RING_CHECK_INTERVAL_S:g} s after the command ends if that is later: with "
        f"--publish-delay 0, within {RING_CHECK_INTERVAL_S:g} s. The old key stays in the bundle "
        "until its last token has expired. Restart the registries within the delay: they read "
        "the bundle only when they start, and refuse the new key's tokens until then.",
        "  fleet keys rotate --publish-delay 600",
    ),
)
@click.option(
    "--publish-delay",
    type=click.IntRange(0),
    help="Seconds before the new key signs [default: FLEET_KEY_PUBLISH_DELAY, 300].",
)
def rotate(publish_delay: int | None) -> None:
    overrides = {} if publish_delay is None else {"key_publish_delay": publish_delay}
    settings = load_settings(overrides=overrides)
    services = build_services(settings)
    rotation = services.signing.rotate()
    _audit(services, "keys.rotate", rotation.kid, signs_from=_iso(rotation.signing_from))
    _print_ring(services)
    delay = settings.key_publish_delay
    if delay >= RING_CHECK_INTERVAL_S:
        when = f"in {delay} s"
    else:
        when = f"within {RING_CHECK_INTERVAL_S:g} s: each server rechecks the ring that often"
    restart = f"within {delay} s" if delay else "now: until then they refuse its tokens"
    click.echo(
        f"key {rotation.kid} signs on every server sharing this key ring from "
        f"{_iso_ms(rotation.everywhere_from)} ({when}); wrote {settings.registry_bundle_file}: "
        f"copy it to every registry and restart them {restart}",
        err=True,
    )


@keys.command(
    "revoke",
    help=with_example(
        "Revoke a compromised signing key now: it leaves the key ring, the bundle and the JWKS "
        "at once, and refresh tokens it signed are refused from the next request. If it was "
        "signing, a fresh key signs in its place with no publish delay (also when it was the "
        f"only key). Every server sharing this key ring rechecks it every "
        f"{RING_CHECK_INTERVAL_S:g} s, so none signs with the revoked key "
        f"{RING_CHECK_INTERVAL_S:g} s after the command ends. Registries still accept its JWTs "
        "until they are restarted on the new bundle: copy it and restart every registry at "
        "once. See docs/runbook-signing-key-compromise.md.",
        "  fleet keys revoke --kid ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP \\\n"
        "    --bundle /etc/docker/registry/fleet-bundle.pem",
    ),
)
@click.option("--kid", required=True, help="The key id to revoke, as `fleet keys list` shows it.")
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a readable copy of the new bundle here (the registry's rootcertbundle).",
)
def revoke(kid: str, bundle: Path | None) -> None:
    settings = load_settings()
    services = build_services(settings)
    revocation = services.signing.revoke(kid)
    _audit(services, "keys.revoke", kid, replacement=revocation.replacement)
    written = [settings.registry_bundle_file]
    if bundle is not None:
        services.signing.ring.write_bundle(bundle)  # readable by a registry of another user
        written.append(bundle)
    _print_ring(services)
    refused = ""
    if revocation.replacement is None:
        signs = f"key {revocation.signing} goes on signing"
    else:
        refused = f" and refuse those of {revocation.replacement}"
        only = " (it was the only key)" if len(services.signing.ring.entries) == 1 else ""
        signs = f"created key {revocation.replacement}{only}: it signs now"
    click.echo(
        f"revoked key {kid}: gone from the key ring, the bundle and the JWKS; {signs}; no server "
        f"sharing this key ring signs with {kid} from {_iso_ms(revocation.everywhere_from)} "
        f"(within {RING_CHECK_INTERVAL_S:g} s)\n"
        f"wrote {', '.join(map(str, written))}: copy the bundle to every registry and restart "
        f"every registry now: until then they still accept JWTs signed by {kid}{refused}",
        err=True,
    )


@click.group("registry")
def registry() -> None:
    """Connect a CNCF Distribution registry to this server."""


@registry.command(
    "auth-config",
    help=with_example(
        "Print the auth: section of a Distribution config and write the certificate bundle "
        "it names.",
        "  fleet registry auth-config --realm https://fleet.example.com/oauth2/token \\\n"
        "    --bundle /etc/docker/registry/fleet-bundle.pem",
    ),
)
@click.option("--realm", required=True, help="This server's /oauth2/token URL, as clients see it.")
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the bundle [default: registry-bundle.pem in the data directory].",
)
def auth_config(realm: str, bundle: Path | None) -> None:
    from fleet.registry_auth.config import render_auth_config

    settings = load_settings()
    services = build_services(settings)
    target = bundle or settings.registry_bundle_file
    services.signing.ring.prune()
    if bundle is None:
        services.signing.write_bundle()  # private, like the rest of the data directory
    else:
        services.signing.ring.write_bundle(target)  # readable by a registry of another user
    click.echo(
        render_auth_config(
            realm, settings.registry_service, settings.token_issuer, str(target.resolve())
        ),
        nl=False,
    )
