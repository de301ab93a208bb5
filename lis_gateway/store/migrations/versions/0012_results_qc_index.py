"""An index for "the analyzer's latest QC run", read when every message is judged.

Without it, judging a message scans all of the analyzer's results (the query
grows with the store); with it, the newest QC message is one index probe.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_results_analyzer_qc', 'results', ['analyzer_id', 'qc', 'message_id'])


def downgrade() -> None:
    op.drop_index('ix_results_analyzer_qc', table_name='results')
