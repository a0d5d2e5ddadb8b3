"""API tokens and teams: who may call the service, for which team, with which scope.

A token is ``sbx_<id>_<secret>``: ``id`` (12 hex digits) is its public part and the row's
key; ``secret`` is 32 random bytes (``secrets.token_urlsafe``). The store keeps only the
SHA-256 of the whole token. A slow password hash (bcrypt, scrypt) protects guessable
passwords; a token has 256 random bits, so one SHA-256 is enough, and it keeps checking a
request cheap. A request's token is found by its id, then its hash is compared with
``hmac.compare_digest`` (constant time): the secret never reaches a database index, so
neither a lookup's timing nor a copy of the database gives it away.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from slicebox.errors import InputError
from slicebox.store.records import TokenRecord
from slicebox.store.schema import TokenRow
from slicebox.store.transitions import StoreError

PREFIX = "sbx_"
_TOKEN = re.compile(r"sbx_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
TEAM_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # the spec's name pattern
DEFAULT_TEAM = "default"


class Scope(StrEnum):
    """What a token may do; each scope includes the ones before it."""

    READ = "read"  # see the team's jobs, logs, events, the pool, profiles
    SUBMIT = "submit"  # ...and submit and cancel the team's jobs
    ADMIN = "admin"  # ...and see and cancel every team's jobs

    def allows(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


class UnknownToken(StoreError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown token"


class TokenInputError(InputError):
    """A team or scope given for a new token is not valid."""


def check_team(team: str, field: str = "team") -> str:
    if not isinstance(team, str) or not TEAM_PATTERN.fullmatch(team):
        raise TokenInputError(f"{field}: {team!r} is not a team name (lower-case letters, "
                              "digits, '.', '_' and '-'; at most 63 characters)")
    return team


def check_scope(scope: str, field: str = "scope") -> Scope:
    try:
        return Scope(scope)
    except ValueError:
        raise TokenInputError(f"{field}: {scope!r} is not a scope (one of: "
                              f"{', '.join(s.value for s in Scope)})") from None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


MAX_LIFETIME_S = 10 * 366 * 24 * 3600.0  # ten years: past that, give none (until revoked)


def create(s: Session, team: str, scope: str, now: float,
           expires_in: float | None = None) -> tuple[TokenRecord, str]:
    """A new token for ``team``: its record and the token itself (shown once, never kept).
    ``expires_in``: seconds it is accepted for (None: until revoked)."""
    team, valid_scope = check_team(team), check_scope(scope)
    if expires_in is not None and not 0 < expires_in <= MAX_LIFETIME_S:
        raise TokenInputError(f"expires_in: {expires_in!r} seconds is not a lifetime (more "
                              f"than 0, at most {MAX_LIFETIME_S:.0f})")
    token_id = secrets.token_hex(6)
    while s.get(TokenRow, token_id) is not None:  # 48 bits: a clash is all but impossible
        token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    row = TokenRow(id=token_id, team=team, scope=valid_scope.value, secret_hash=digest(token),
                   created_at=now, revoked_at=None,
                   expires_at=None if expires_in is None else now + expires_in)
    s.add(row)
    return _record(row), token


def listed(s: Session, include_revoked: bool = False,
           now: float | None = None) -> list[TokenRecord]:
    """Live tokens (with ``include_revoked``, revoked and expired ones too)."""
    query = select(TokenRow).order_by(TokenRow.created_at, TokenRow.id)
    if not include_revoked:
        query = query.where(TokenRow.revoked_at.is_(None))
        if now is not None:
            query = query.where(TokenRow.expires_at.is_(None) | (TokenRow.expires_at > now))
    return [_record(row) for row in s.scalars(query)]


def revoke(s: Session, token_id: str, now: float) -> TokenRecord:
    """Revoke a token by its id (or the whole token); revoking twice keeps the first time."""
    match = _TOKEN.fullmatch(token_id)
    key = match.group(1) if match else token_id
    row = s.get(TokenRow, key, with_for_update=True) if len(key) <= 32 else None
    if row is None:
        raise UnknownToken(f"no token {key[:40]!r}")
    if row.revoked_at is None:
        row.revoked_at = now
    return _record(row)


_DUMMY_HASH = digest("sbx_000000000000_" + "0" * 43)


def authenticate(s: Session, token: str, now: float | None = None) -> TokenRecord | None:
    """The live token ``token`` is, or None (malformed, unknown, wrong secret, revoked,
    or expired by ``now``)."""
    match = _TOKEN.fullmatch(token)
    row = s.get(TokenRow, match.group(1)) if match else None
    # Compared even when there is no such token, so a miss takes as long as a wrong secret.
    expected = row.secret_hash if row is not None else _DUMMY_HASH
    same = hmac.compare_digest(expected, digest(token))
    if row is None or not same or row.revoked_at is not None:
        return None
    if now is not None and row.expires_at is not None and now >= row.expires_at:
        return None
    return _record(row)


def _record(row: TokenRow) -> TokenRecord:
    return TokenRecord(id=row.id, team=row.team, scope=row.scope, created_at=row.created_at,
                       revoked_at=row.revoked_at, expires_at=row.expires_at)
