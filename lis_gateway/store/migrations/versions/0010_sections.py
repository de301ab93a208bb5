"""Lab sections: the section of each analyzer and the sections each user holds.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('analyzers') as batch:
        batch.add_column(sa.Column('section', sa.String(length=100), nullable=False,
                                   server_default=''))
    op.create_table(
        'user_sections',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('section', sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_user_sections_user_id_users')),
        sa.PrimaryKeyConstraint('user_id', 'section', name=op.f('pk_user_sections')),
    )


def downgrade() -> None:
    op.drop_table('user_sections')
    # not in batch mode: SQLite (3.35+) drops a column in place, where a batch copy of
    # ``analyzers`` would fail on the tables that reference it
    op.drop_column('analyzers', 'section')
