"""Users carry their practising-certificate number (XML4 ``MA_BS_DOC_KQ``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('users', sa.Column('certificate_number', sa.String(length=50),
                                     nullable=False, server_default=''))


def downgrade() -> None:
    # Not a batch (copy-and-rename) operation: on SQLite, with foreign keys on, dropping
    # the old users table fails as soon as a role or a lifecycle event refers to a user.
    # ALTER TABLE ... DROP COLUMN needs SQLite 3.35 (2021).
    op.drop_column('users', 'certificate_number')
