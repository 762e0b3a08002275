"""/api/user: the signed-in user's profile, password and account."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from api.extensions.jwt import NO_STORE
from api.schemas.auth import TokenResponse
from api.schemas.common import ERRORS, ErrorResponse, MessageResponse
from api.schemas.user import ChangePasswordBody, DeleteAccountBody, ProfileUpdate, UserOut
from api.security import authenticate
from api.services import accounts
from api.services.identity import account

bp = APIBlueprint("user", __name__, url_prefix="/api/user", abp_tags=[Tag(name="user")],
                  abp_security=[{"bearer": []}], abp_responses=ERRORS)


def _out(user) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@bp.get("/profile", responses={200: UserOut})
def get_profile():
    """The signed-in user's profile."""
    return _out(account(authenticate()))


@bp.put("/profile", responses={200: UserOut, 409: ErrorResponse})
def put_profile(body: ProfileUpdate):
    """Change username, full_name, bio or phone; any other field is refused by name."""
    user = account(authenticate())
    return _out(accounts.update_profile(user, body.model_dump(exclude_unset=True)))


@bp.post("/password", responses={200: TokenResponse})
def change_password(body: ChangePasswordBody):
    """Change the password; other sessions end, and a fresh token pair comes back. Wrong current passwords
    get growing delays per user and per IP, as sign-ins do (429 `too_many_attempts`, Retry-After)."""
    user = account(authenticate())
    return accounts.change_password(user, body.current_password, body.new_password), 200, NO_STORE


@bp.delete("/account", responses={200: MessageResponse})
def delete_account(body: DeleteAccountBody):
    """Erase the account and everything it owns, with a code mailed for purpose `delete_account`."""
    user = account(authenticate())
    accounts.delete_account(user, body.code)
    return {"message": "account deleted"}
