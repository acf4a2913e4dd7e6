"""Index the audit log by target, for a record's accesses in its history (R-HIST-1)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain CREATE INDEX: a batch (copy-and-move) on SQLite would drop the triggers
    # that keep the audit log append-only.
    op.create_index('ix_audit_log_target_seq', 'audit_log', ['target', 'seq'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_log_target_seq', table_name='audit_log')
