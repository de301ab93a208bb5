"""The outbox carries retractions: one more entry kind per result version and destination.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite cannot change a unique constraint in place (the outbox is
    # referenced by no other table, so the copy-and-rename is safe)
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=12), nullable=False,
                                   server_default='result'))
        batch.drop_constraint('uq_outbox_result_version_id_destination', type_='unique')
        batch.create_unique_constraint('uq_outbox_result_version_id_destination_kind',
                                       ['result_version_id', 'destination', 'kind'])


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE kind <> 'result'")
    with op.batch_alter_table('outbox') as batch:
        batch.drop_constraint('uq_outbox_result_version_id_destination_kind', type_='unique')
        batch.create_unique_constraint('uq_outbox_result_version_id_destination',
                                       ['result_version_id', 'destination'])
        batch.drop_column('kind')
