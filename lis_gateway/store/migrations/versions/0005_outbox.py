"""The outbox: one entry per released result version and destination.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('result_version_id', sa.Integer(), nullable=False),
        sa.Column('destination', sa.String(length=100), nullable=False),
        sa.Column('sample_id', sa.Integer(), nullable=False),
        sa.Column('control_id', sa.String(length=20), nullable=False),
        sa.Column('state', sa.String(length=12), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_status', sa.String(length=20), server_default='', nullable=False),
        sa.Column('last_error', sa.Text(), server_default='', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['result_version_id'], ['result_versions.id'],
                                name=op.f('fk_outbox_result_version_id_result_versions')),
        sa.ForeignKeyConstraint(['sample_id'], ['samples.id'],
                                name=op.f('fk_outbox_sample_id_samples')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
        sa.UniqueConstraint('result_version_id', 'destination',
                            name=op.f('uq_outbox_result_version_id_destination')),
    )
    op.create_index('ix_outbox_destination_state', 'outbox', ['destination', 'state'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_outbox_destination_state', table_name='outbox')
    op.drop_table('outbox')
