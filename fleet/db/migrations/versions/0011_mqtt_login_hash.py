"""Device MQTT logins checked by fleet (FLEET_MQTT_AUTH=http)

``devices`` gains ``mqtt_login_hash``: the keyed hash of the device's MQTT password, from which
fleet answers the broker's login questions. Empty for devices enrolled under dynamic security
(mosquitto holds their logins); such a device gets one when it enrolls again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

HASH_LENGTH = 128  # kept literal, as the application's constants may change


def upgrade() -> None:
    with op.batch_alter_table("devices", recreate="never") as batch:
        batch.add_column(sa.Column("mqtt_login_hash", sa.String(HASH_LENGTH), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", recreate="never") as batch:
        batch.drop_column("mqtt_login_hash")
