"""Lifecycle transitions, rule outcomes with their rule set, user passwords.

Adds to ``validation_events`` the transition record (states, actor, rule-set
version, hold reasons), to ``rule_outcomes`` the rule kind and rule-set
version, and to ``users`` an argon2 password hash.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_EVENT_COLUMNS = (
    ("from_state", sa.String(length=20), ""),
    ("to_state", sa.String(length=20), ""),
    ("actor_kind", sa.String(length=10), ""),
    ("actor", sa.String(length=100), ""),
    ("actor_roles", sa.String(length=200), ""),
    ("rule_set_version", sa.String(length=100), ""),
    ("reasons", sa.Text(), "[]"),
)
_OUTCOME_COLUMNS = (
    ("kind", sa.String(length=30), ""),
    ("rule_set_version", sa.String(length=100), ""),
)


def upgrade() -> None:
    for name, type_, default in _EVENT_COLUMNS:
        op.add_column('validation_events', sa.Column(name, type_, nullable=False,
                                                     server_default=default))
    for name, type_, default in _OUTCOME_COLUMNS:
        op.add_column('rule_outcomes', sa.Column(name, type_, nullable=False,
                                                 server_default=default))
    op.add_column('users', sa.Column('password_hash', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('password_hash')
    with op.batch_alter_table('rule_outcomes') as batch:
        for name, _type, _default in _OUTCOME_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table('validation_events') as batch:
        for name, _type, _default in _EVENT_COLUMNS:
            batch.drop_column(name)
