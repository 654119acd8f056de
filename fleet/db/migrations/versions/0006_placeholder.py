"""placeholder for the paged lists' revision 0006 (built on another branch)

This revision changes nothing. It exists only so that 0007 (the overview's indexes) has its
parent on this branch; when the paged lists' 0006 is merged, this file is deleted and 0007
follows that one instead.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 14:40:00
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
