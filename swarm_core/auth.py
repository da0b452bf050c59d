"""Users and access tokens: bcrypt password hashes, signed expiring tokens, login throttling.

Passwords are never truncated: bcrypt reads at most 72 bytes, so every password is first
reduced to a fixed-length digest (SHA-256, base64) and that is bcrypt-hashed; two long passwords
that share their first 72 bytes stay different. Login answers the same 401 for an unknown user and
a wrong password, and spends the same bcrypt time on both.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import secrets
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt

from swarm_core.models import LLMSettings, User
from swarm_core.ports import AttemptStore, ConflictError, UserStore
from swarm_core.quotas import ModelPolicy

log = logging.getLogger(__name__)

TOKEN_ISSUER = "swarm-backend"
TOKEN_AUDIENCE = "swarm-api"
# How long a process trusts the user document it read (every request checks the token's user).
USER_CACHE_SECONDS = 5.0
USER_CACHE_SIZE = 4096


class AuthError(Exception):
    """Credentials or token not accepted (HTTP 401)."""


class UsernameTaken(Exception):
    """HTTP 409."""


class Throttled(Exception):
    """Too many failed logins (HTTP 429); `retry_after` in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed logins, try again later")
        self.retry_after = retry_after


def normalise_username(username: str) -> str:
    """One spelling per user: Unicode NFKC, case-folded, surrounding spaces removed."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), password_hash.encode())
    except ValueError:
        return False


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many attempts a key may make in its window before it must wait."""

    failures_per_user_and_address: int = 5
    failures_per_address: int = 30
    failure_window_seconds: int = 900
    signups_per_address: int = 20
    signup_window_seconds: int = 3600


UNKNOWN_ADDRESS = "unknown"


def client_address(forwarded_for: str, hops: int = 1) -> str:
    """The client's address: the entry of `X-Forwarded-For` `hops` from the right.

    Azure's front end (App Service / Functions) appends the address of the peer it accepted the
    connection from, `ip:port`, to whatever the client sent; each proxy of your own in front
    appends one more (`FORWARDED_HOPS`). Entries further left were written by the client and
    are never used: a spoofed prefix changes nothing. No such entry (a request that did not
    come through the front end) is one shared "unknown" address."""
    entries = [e.strip() for e in forwarded_for.split(",") if e.strip()]
    if len(entries) < hops:
        return UNKNOWN_ADDRESS
    entry = entries[-hops]
    for candidate in (entry, entry.rsplit(":", 1)[0], entry.strip("[]"), entry.split("]")[0][1:]):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return UNKNOWN_ADDRESS


class LoginThrottle:
    """Login and signup protection that an attacker cannot turn against a user.

    Failed logins count per (username, address) and per address, never per username alone: a
    stranger who fails five times for `alice` from address A makes A wait, while alice, from
    her own address, logs in as ever. An address that fails for many usernames (credential
    stuffing) waits for all of them. A login that succeeds clears its (username, address)
    count. Signups count per address. The counts live in the app's storage (`AttemptStore`),
    shared by every instance and expiring with their window; a restart resets nothing.
    The address is the one the platform saw (see `client_address`), so a client cannot reset
    its count by writing another one."""

    def __init__(
        self,
        attempts: AttemptStore,
        policy: ThrottlePolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.attempts = attempts
        self.policy = policy or ThrottlePolicy()
        self.clock = clock

    def _login_limits(self, username: str, address: str) -> list[tuple[str, int]]:
        p = self.policy
        return [
            (f"login:{username}@{address}", p.failures_per_user_and_address),
            (f"login:@{address}", p.failures_per_address),
        ]

    def check_login(self, username: str, address: str) -> None:
        """Throttled (with the seconds to wait) if this username and address must wait."""
        now, window = self.clock(), self.policy.failure_window_seconds
        for key, limit in self._login_limits(username, address):
            recent = self.attempts.recent(key, now - window)
            if len(recent) >= limit:
                raise Throttled(_wait(recent, limit, window, now))

    def login_failed(self, username: str, address: str) -> None:
        now, window = self.clock(), self.policy.failure_window_seconds
        for key, _ in self._login_limits(username, address):
            self.attempts.add(key, now, now - window)

    def login_succeeded(self, username: str, address: str) -> None:
        self.attempts.clear(self._login_limits(username, address)[0][0])

    def signup(self, address: str) -> None:
        """Count a signup from `address`; Throttled if it made too many in the window."""
        now, window = self.clock(), self.policy.signup_window_seconds
        limit = self.policy.signups_per_address
        key = f"signup:@{address}"
        recent = self.attempts.recent(key, now - window)
        if len(recent) >= limit:
            raise Throttled(_wait(recent, limit, window, now))
        self.attempts.add(key, now, now - window)


def _wait(recent: list[float], limit: int, window: int, now: float) -> int:
    """Seconds until fewer than `limit` of `recent` are inside the window."""
    return max(int(recent[-limit] + window - now) + 1, 1)


@dataclass
class IssuedToken:
    access_token: str
    expires_in: int
    user: User


class AuthService:
    def __init__(
        self,
        users: UserStore,
        throttle: LoginThrottle,
        secret: str,
        token_minutes: int = 60,
        bcrypt_rounds: int = 12,
        models: ModelPolicy | None = None,
    ) -> None:
        if not secret:
            raise ValueError("an auth secret is required")
        self.users = users
        self.secret = secret
        self.token_minutes = token_minutes
        self.bcrypt_rounds = bcrypt_rounds
        self.throttle = throttle
        self.models = models or ModelPolicy()
        self._lock = threading.Lock()
        self._recent_users: OrderedDict[str, tuple[User, float]] = OrderedDict()
        # Compared against when the user does not exist, so both failures cost the same time.
        self._dummy_hash = hash_password(secrets.token_urlsafe(16), bcrypt_rounds)

    def signup(self, username: str, password: str, address: str) -> IssuedToken:
        self.throttle.signup(address)
        user = User(
            user_id=uuid.uuid4().hex,
            username=normalise_username(username),
            password_hash=hash_password(password, self.bcrypt_rounds),
        )
        try:
            self.users.create_user(user)
        except ConflictError as exc:
            raise UsernameTaken(user.username) from exc
        log.info("signup user_id=%s", user.user_id)
        return self.issue(user)

    def login(self, username: str, password: str, address: str) -> IssuedToken:
        """A token for the right password; `address` is the client's (`client_address`)."""
        name = normalise_username(username)
        self.throttle.check_login(name, address)
        user = self.users.get_user(name)
        ok = verify_password(password, user.password_hash if user else self._dummy_hash)
        if user is None or not ok:
            self.throttle.login_failed(name, address)
            raise AuthError("invalid username or password")
        self.throttle.login_succeeded(name, address)
        return self.issue(user)

    def issue(self, user: User) -> IssuedToken:
        now = datetime.now(UTC)
        claims = {
            "sub": user.user_id,
            "name": user.username,
            "ver": user.token_version,
            "iss": TOKEN_ISSUER,
            "aud": TOKEN_AUDIENCE,
            "iat": now,
            "exp": now + timedelta(minutes=self.token_minutes),
        }
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return IssuedToken(token, self.token_minutes * 60, user)

    def authenticate(self, token: str) -> User:
        """The user of a valid token: signed by us, not expired, its user still there, and not
        revoked (issued at the user's current token version). AuthError otherwise."""
        user_id, username, version = self.verify(token)
        user = self._current_user(username)
        if user is None or user.user_id != user_id:
            raise AuthError("the token's user does not exist")
        if version != user.token_version:
            raise AuthError("the token was revoked (the user logged out)")
        return user

    def logout(self, user: User) -> None:
        """Revoke every token of the user (each one of their sessions)."""
        revoked = user.model_copy(update={"token_version": user.token_version + 1})
        self._replace(revoked)
        log.info("logout user_id=%s: tokens revoked", user.user_id)

    def set_llm_settings(self, user: User, llm: LLMSettings) -> User:
        """Replace the user's model settings for the swarms they create from now on."""
        self.models.check(llm)
        changed = user.model_copy(update={"llm": llm})
        self._replace(changed)
        return changed

    def _replace(self, user: User) -> None:
        if not self.users.replace_user(user):
            raise AuthError("the user no longer exists")
        with self._lock:
            self._recent_users[user.username] = (user, time.monotonic() + USER_CACHE_SECONDS)

    def _current_user(self, username: str) -> User | None:
        """The stored user, read at most every few seconds per process (every request checks
        it). A logout elsewhere takes effect here within `USER_CACHE_SECONDS`."""
        now = time.monotonic()
        with self._lock:
            cached = self._recent_users.get(username)
        if cached is not None and cached[1] > now:
            return cached[0]
        user = self.users.get_user(username)
        with self._lock:
            if user is None:
                self._recent_users.pop(username, None)
            else:
                self._recent_users[username] = (user, now + USER_CACHE_SECONDS)
                self._recent_users.move_to_end(username)
                while len(self._recent_users) > USER_CACHE_SIZE:
                    self._recent_users.popitem(last=False)
        return user

    def verify(self, token: str) -> tuple[str, str, int]:
        """The (user_id, username, token version) of a well-signed, unexpired token."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience=TOKEN_AUDIENCE,
                issuer=TOKEN_ISSUER,
                options={"require": ["exp", "sub", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError("invalid or expired token") from exc
        return str(claims["sub"]), str(claims.get("name", "")), int(claims.get("ver", 0))
