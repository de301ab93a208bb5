"""Orders from the HIS: the patient on the sample, order priority and times, raw order messages.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_SAMPLE_COLUMNS = ("family_name", "middle_name", "given_name", "visit_number")


def upgrade() -> None:
    op.create_table(
        'order_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('control_id', sa.String(length=100), nullable=False),
        sa.Column('accepted', sa.Boolean(), nullable=False),
        sa.Column('problems', sa.Text(), nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_order_messages')),
    )
    with op.batch_alter_table('samples') as batch:
        for name in _SAMPLE_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length=100), nullable=False,
                                       server_default=''))
        batch.add_column(sa.Column('birth_date', sa.Date(), nullable=True))
        batch.add_column(sa.Column('sex', sa.String(length=1), nullable=False,
                                   server_default=''))
        batch.add_column(sa.Column('patient_source', sa.String(length=10), nullable=False,
                                   server_default=''))
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('priority', sa.String(length=1), nullable=False,
                                   server_default='R'))
        batch.add_column(sa.Column('collected_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('order_message_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f('fk_orders_order_message_id_order_messages'),
                                 'order_messages', ['order_message_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.drop_constraint(op.f('fk_orders_order_message_id_order_messages'),
                              type_='foreignkey')
        for name in ('order_message_id', 'collected_at', 'priority'):
            batch.drop_column(name)
    with op.batch_alter_table('samples') as batch:
        for name in ('patient_source', 'sex', 'birth_date', *reversed(_SAMPLE_COLUMNS)):
            batch.drop_column(name)
    op.drop_table('order_messages')
