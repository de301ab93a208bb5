"""Message-level problems (no L record, framing deviations, undecodable bytes).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('messages', sa.Column('problems', sa.Text(), nullable=False,
                                        server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('problems')
