"""Flask CLI commands: `flask --app api create-admin`."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import select

from api.schemas.auth import normalise_email
from api.services import identity
from api.services.passwords import check_policy, hash_password
from shared.database import db, utcnow, write_tx
from shared.models import Role, User
from shared.models.user import new_id


@click.command("create-admin")
@click.option("--email", required=True, help="the admin's email")
@click.password_option(envvar="ADMIN_PASSWORD", help="or set ADMIN_PASSWORD")
@with_appcontext
def create_admin(email: str, password: str) -> None:
    """Create the first admin, or promote an existing account to admin."""
    email = normalise_email(email)
    check_policy(password, email)
    found = db.session.execute(select(User.id).where(User.email == email)).scalar_one_or_none()
    user_id = found or new_id()
    with identity.changing(user_id), write_tx():
        user = db.session.get(User, user_id)
        if user is None:
            user = User(id=user_id, email=email, password_hash=hash_password(password), email_verified_at=utcnow())
            db.session.add(user)
        user.role = Role.admin.value
    click.echo(f"{email} is an admin")


def init_app(app: Flask) -> None:
    """Register the create-admin command on the app's CLI."""
    app.cli.add_command(create_admin)
