"""Flask CLI commands: `flask --app api create-admin`."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import select

from api.schemas.auth import normalise_email
from api.services.passwords import check_policy, hash_password
from shared.database import db, utcnow, write_tx
from shared.models import Role, User


@click.command("create-admin")
@click.option("--email", required=True, help="the admin's email")
@click.password_option(envvar="ADMIN_PASSWORD", help="or set ADMIN_PASSWORD")
@with_appcontext
def create_admin(email: str, password: str) -> None:
    """Create the first admin, or promote an existing account to admin."""
    email = normalise_email(email)
    check_policy(password, email)
    with write_tx():
        user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
        if user is None:
            user = User(email=email, password_hash=hash_password(password), email_verified_at=utcnow())
            db.session.add(user)
        user.role = Role.admin.value
    click.echo(f"{email} is an admin")


def init_app(app: Flask) -> None:
    app.cli.add_command(create_admin)
