"""Work pushed to analyzers (downloads) and patients taken from an analyzer's record.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('samples') as batch:
        batch.add_column(sa.Column('patient_analyzer', sa.String(length=100), nullable=False,
                                   server_default=''))
    op.create_table(
        'downloads',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('analyzer', sa.String(length=100), nullable=False),
        sa.Column('accession', sa.String(length=100), nullable=False),
        sa.Column('action', sa.String(length=10), nullable=False),
        sa.Column('test_code', sa.String(length=100), nullable=False, server_default=''),
        sa.Column('state', sa.String(length=12), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('last_error', sa.Text(), nullable=False, server_default=''),
        sa.Column('payload', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_downloads')),
    )
    op.create_index('ix_downloads_analyzer_state', 'downloads', ['analyzer', 'state'])


def downgrade() -> None:
    op.drop_index('ix_downloads_analyzer_state', table_name='downloads')
    op.drop_table('downloads')
    # not in batch mode: SQLite (3.35+) drops a column in place, where a batch
    # copy of ``samples`` would fail on the tables that reference it
    op.drop_column('samples', 'patient_analyzer')
