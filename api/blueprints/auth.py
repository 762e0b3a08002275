"""/api/auth: codes, sign-up, sign-in, refresh, sign-out, password reset."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from api.extensions.jwt import NO_STORE
from api.extensions.limiter import auth_route_limit, per_ip
from api.schemas.auth import LoginBody, RegisterBody, ResetPasswordBody, SendCodeBody, SendCodeResponse, TokenResponse
from api.schemas.common import ERRORS, ErrorResponse, MessageResponse
from api.schemas.user import UserOut
from api.security import authenticate
from api.services import accounts
from shared.settings import get_settings

bp = APIBlueprint("auth", __name__, url_prefix="/api/auth", abp_tags=[Tag(name="auth")], abp_responses=ERRORS)
BEARER = [{"bearer": []}]

bp.before_request(auth_route_limit)


@bp.post("/send-code", responses={202: SendCodeResponse})
def send_code(body: SendCodeBody):
    """Mail a 6-digit code for register, reset_password or delete_account; resends are limited per address
    and purpose, however it is spelled (429 `rate_limited`)."""
    per_ip(get_settings().RATELIMIT_SEND_CODE_IP, "send-code-ip")
    return accounts.send_code(body.email, body.purpose), 202


@bp.post("/register", responses={201: UserOut, 409: ErrorResponse})
def register(body: RegisterBody):
    """Create a student account with the code mailed for purpose `register`."""
    user = accounts.register(body.email, body.password, body.code, body.username)
    return UserOut.model_validate(user, from_attributes=True), 201


@bp.post("/login", responses={200: TokenResponse})
def login(body: LoginBody):
    """Exchange email and password for an access and a refresh token."""
    return accounts.login(body.email, body.password), 200, NO_STORE


@bp.post("/refresh", responses={200: TokenResponse}, security=BEARER)
def refresh():
    """Send the refresh token as Bearer: a new pair comes back and the old refresh token is spent."""
    return accounts.refresh(authenticate(kind="refresh")), 200, NO_STORE


@bp.post("/logout", responses={200: MessageResponse}, security=BEARER)
def logout():
    """End this sign-in session: every access and refresh token of it."""
    authenticate()
    accounts.logout()
    return {"message": "signed out"}


@bp.post("/reset-password", responses={200: MessageResponse})
def reset_password(body: ResetPasswordBody):
    """Set a new password with the code mailed for purpose `reset_password`; every token of the user is revoked."""
    accounts.reset_password(body.email, body.code, body.new_password)
    return {"message": "password changed; sign in again"}
