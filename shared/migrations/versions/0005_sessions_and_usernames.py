"""Jobs record the sign-in session that created them; usernames are unique whatever their case.

Before the case-insensitive unique index is made, usernames that collide when lower-cased
are renamed (all but the oldest account of each group get `_` and 16 characters of their id) and
each rename is logged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:50:00

"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _rename_collisions(conn) -> None:
    rows = conn.execute(sa.text(
        "SELECT id, username FROM users WHERE username IS NOT NULL "
        "AND lower(username) IN (SELECT lower(username) FROM users WHERE username IS NOT NULL "
        "GROUP BY lower(username) HAVING count(*) > 1) ORDER BY lower(username), created_at, id")).all()
    seen: set[str] = set()
    for user_id, username in rows:
        key = username.lower()
        if key not in seen:
            seen.add(key)  # the oldest account keeps its name
            continue
        new = f"{username[:23]}_{user_id[:16]}"  # 40 characters at most
        conn.execute(sa.text("UPDATE users SET username = :new WHERE id = :id"), {"new": new, "id": user_id})
        log.warning("username %r of user %s collided (case-insensitively) and was renamed to %r",
                    username, user_id, new)


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_id', sa.String(length=32), nullable=True))
    _rename_collisions(op.get_bind())
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_username'))
        batch_op.create_index('ux_users_username_lower', [sa.text('lower(username)')], unique=True)


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ux_users_username_lower')
        batch_op.create_index(batch_op.f('ix_users_username'), ['username'], unique=True)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('session_id')
