"""Who is calling: ``Authorization: Bearer <token>``, checked against the store.

No token, or one the store does not know (wrong, revoked): 401. A token whose scope is
too small for the route: 403. A team's token sees only its team's jobs; another team's
job is answered as if it did not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from slicebox.service.problems import ProblemError
from slicebox.store import Scope, Store

bearer = HTTPBearer(auto_error=False, description="a token from `slicebox token create`")
_CHALLENGE = 'Bearer realm="slicebox"'


@dataclass(frozen=True)
class Caller:
    token_id: str
    team: str
    scope: Scope

    @property
    def admin(self) -> bool:
        return self.scope is Scope.ADMIN

    def sees(self, team: str) -> bool:
        return self.admin or team == self.team


def requires(scope: Scope) -> Callable[..., Caller]:
    """A dependency: the caller, if its token is valid and allows ``scope``."""

    def caller(request: Request, credentials: Annotated[
            HTTPAuthorizationCredentials | None, Security(bearer)]) -> Caller:
        if credentials is None:
            raise ProblemError(401, "unauthorized", "this needs a token: send "
                               "'Authorization: Bearer <token>' (slicebox token create)",
                               headers={"WWW-Authenticate": _CHALLENGE})
        store: Store = request.app.state.store
        record = store.authenticate(credentials.credentials)
        if record is None:
            raise ProblemError(401, "unauthorized", "the token is not valid (wrong, "
                               "revoked or expired)", headers={"WWW-Authenticate":
                                                    _CHALLENGE + ', error="invalid_token"'})
        granted = Scope(record.scope)
        if not granted.allows(scope):
            raise ProblemError(403, "forbidden", f"this needs a token with scope "
                               f"{scope.value} (or more); this token's scope is "
                               f"{granted.value}", headers={
                                   "WWW-Authenticate": _CHALLENGE + ', error='
                                   f'"insufficient_scope", scope="{scope.value}"'})
        return Caller(record.id, record.team, granted)

    return caller


READ = requires(Scope.READ)
SUBMIT = requires(Scope.SUBMIT)
ADMIN = requires(Scope.ADMIN)

# What a route declares: ``caller: Reader`` needs a read-scope token, and so on.
Reader = Annotated[Caller, Depends(READ)]
Submitter = Annotated[Caller, Depends(SUBMIT)]
Admin = Annotated[Caller, Depends(ADMIN)]
