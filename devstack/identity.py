"""Microsoft Entra ID, locally: a development token issuer, the credential that holds it, and the
managed-identity endpoint that hands its tokens to a process as Azure hands them to a Function App.

In Azure the app has no key: it asks its managed identity for a token per service (Storage,
Cosmos DB, Web PubSub) and sends it as a bearer. Locally the emulators play the services
(Azurite with ``--oauth basic``, the Cosmos DB server with ``--auth aad``, the Web PubSub emulator
with ``--identity``) and this module plays Entra ID:

- `DevTokenIssuer` mints Entra-shaped access tokens: ``iss`` ``https://sts.windows.net/<tenant>/``,
  ``aud`` the resource the scope names (``https://storage.azure.com/.default`` →
  ``https://storage.azure.com``), ``appid``/``oid``/``sub`` the identity, ``iat``/``nbf``/``exp``,
  ``idp`` ``devstack``; signed HS256 with the issuer's own signing key, which no emulator and no
  account key shares, so a token is provably the issuer's (`DevTokenIssuer.verify`) and never a
  signature made with an account or access key. The emulators check these tokens as Azurite's
  basic OAuth mode does (issuer, audience, lifetime), not their signature.
- `DevCredential` is an `azure.core.credentials.TokenCredential` over an issuer: what a test
  injects where the app takes its credential (`swarm_core.bootstrap.build_azure(credential=...)`).
- `serve_managed_identity` answers the App Service managed-identity protocol
  (``GET IDENTITY_ENDPOINT?resource=…&api-version=2019-08-01&client_id=…`` with the
  ``X-IDENTITY-HEADER`` secret), which Azure Functions gives every app through the environment
  variables ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``. A process with those variables set
  runs the production path unchanged: ``DefaultAzureCredential`` (or ``ManagedIdentityCredential``,
  as the Functions host uses for ``AzureWebJobsStorage__credential=managedidentity``) finds the
  managed identity and gets its tokens here. Only the identity whose client id it was started
  with gets one, as only the app's user-assigned identity is assigned to the Function App.

Run the endpoint with

    python -m devstack.identity --port 7090 --header SECRET --signing-key KEY --client-id ID
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

from devstack.serving import serve_until_signalled

logger = logging.getLogger(__name__)

# The development tenant and the app's user-assigned identity (fixed, public, not secrets).
DEV_TENANT_ID = "0de70000-0000-4000-8000-00000000de70"
DEV_CLIENT_ID = "5ea7c0de-0000-4000-8000-000000000a99"
ENTRA_ISSUER_PREFIX = "https://sts.windows.net/"
DEV_IDP = "devstack"
TOKEN_LIFETIME_SECONDS = 3600
# The App Service managed-identity protocol version the SDKs speak.
MSI_API_VERSION = "2019-08-01"
MSI_PATH = "/msi/token"


def resource_of(scope: str) -> str:
    """The resource (the token's audience) a scope names: ``<resource>/.default`` → resource."""
    return scope[: -len("/.default")] if scope.endswith("/.default") else scope


@dataclass(frozen=True)
class DevTokenIssuer:
    """Mints and checks development Entra ID access tokens for one tenant."""

    signing_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    tenant_id: str = DEV_TENANT_ID

    @property
    def issuer(self) -> str:
        return f"{ENTRA_ISSUER_PREFIX}{self.tenant_id}/"

    def mint(
        self, resource: str, client_id: str, lifetime: int = TOKEN_LIFETIME_SECONDS
    ) -> tuple[str, int]:
        """An access token for `resource` as the identity `client_id`, and when it expires."""
        now = int(time.time())
        expires_on = now + lifetime
        principal = str(uuid.uuid5(uuid.NAMESPACE_URL, f"devstack-identity:{client_id}"))
        claims = {
            "aud": resource,
            "iss": self.issuer,
            "iat": now,
            "nbf": now - 60,
            "exp": expires_on,
            "appid": client_id,
            "azp": client_id,
            "oid": principal,
            "sub": principal,
            "tid": self.tenant_id,
            "idtyp": "app",
            "idp": DEV_IDP,
            "ver": "1.0",
        }
        token = jwt.encode(claims, self.signing_key, algorithm="HS256", headers={"kid": DEV_IDP})
        return token, expires_on

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this issuer minted (signature, issuer, lifetime); else raises
        `jwt.PyJWTError`."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self.signing_key,
            algorithms=["HS256"],
            issuer=self.issuer,
            options={"require": ["exp", "iat", "aud", "iss"], "verify_aud": False},
        )
        return claims


def entra_claims(token: str, audiences: Iterable[str]) -> dict[str, Any]:
    """The claims of an Entra-shaped bearer token for one of `audiences`, checked as the emulators
    check it (Azurite's basic OAuth mode): an Entra issuer, the audience, the lifetime; the
    signature is not checked (the emulators do not hold Entra's keys). Raises `jwt.PyJWTError`."""
    claims: dict[str, Any] = jwt.decode(
        token,
        options={
            "verify_signature": False,
            "verify_exp": True,
            "verify_nbf": True,
            "verify_aud": False,
            "require": ["exp", "iss", "aud"],
        },
    )
    if not str(claims["iss"]).startswith(ENTRA_ISSUER_PREFIX):
        raise jwt.InvalidIssuerError(f"issuer {claims['iss']!r} is not Entra ID")
    wanted = {a.rstrip("/") for a in audiences}
    if str(claims["aud"]).rstrip("/") not in wanted:
        raise jwt.InvalidAudienceError(f"audience {claims['aud']!r} is not {sorted(wanted)}")
    return claims


class DevCredential:
    """A `TokenCredential` that signs in as one identity with the development issuer."""

    def __init__(self, issuer: DevTokenIssuer, client_id: str = DEV_CLIENT_ID) -> None:
        self.issuer = issuer
        self.client_id = client_id

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> Any:
        from azure.core.credentials import AccessToken

        if len(scopes) != 1:
            raise ValueError("exactly one scope, as Entra ID requires")
        token, expires_on = self.issuer.mint(resource_of(scopes[0]), self.client_id)
        return AccessToken(token, expires_on)

    def close(self) -> None:
        """Nothing to release (the SDKs close their credentials on shutdown)."""


# --- the managed-identity endpoint -------------------------------------------------------------


def managed_identity_app(issuer: DevTokenIssuer, header: str, client_id: str) -> web.Application:
    """The App Service managed-identity endpoint for one user-assigned identity."""

    async def token(request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.headers.get("X-IDENTITY-HEADER", ""), header):
            return web.json_response(
                {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"}, status=401
            )
        query = request.query
        if query.get("api-version") != MSI_API_VERSION:
            return web.json_response(
                {"statusCode": 400, "message": f"api-version must be {MSI_API_VERSION}"},
                status=400,
            )
        resource = query.get("resource", "")
        asked = query.get("client_id") or query.get("principal_id") or client_id
        if not resource:
            return web.json_response({"statusCode": 400, "message": "no resource"}, status=400)
        if asked != client_id or "mi_res_id" in query or "object_id" in query:
            # Only the identity assigned to the app exists here.
            return web.json_response(
                {"statusCode": 400, "message": "Unable to load the proper Managed Identity."},
                status=400,
            )
        access_token, expires_on = issuer.mint(resource_of(resource), client_id)
        logger.info("token for %s as %s", resource, client_id)
        return web.json_response(
            {
                "access_token": access_token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            }
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get(MSI_PATH, token)
    app.router.add_get("/health", health)
    return app


async def serve_managed_identity(
    issuer: DevTokenIssuer, header: str, client_id: str, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Start the endpoint; port 0 picks a free one. Returns the runner and the bound port."""
    runner = web.AppRunner(managed_identity_app(issuer, header, client_id), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_port: int = runner.addresses[0][1]
    return runner, bound_port


async def _serve_until_signalled(
    issuer: DevTokenIssuer, header: str, client_id: str, host: str, port: int
) -> None:
    runner, bound_port = await serve_managed_identity(issuer, header, client_id, host, port)
    print(f"managed identity endpoint on http://{host}:{bound_port}{MSI_PATH}", flush=True)
    await serve_until_signalled(runner)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Development managed-identity endpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7090)
    parser.add_argument("--header", default=os.environ.get("DEVSTACK_IDENTITY_HEADER"))
    parser.add_argument("--signing-key", default=os.environ.get("DEVSTACK_IDENTITY_KEY"))
    parser.add_argument("--client-id", default=DEV_CLIENT_ID)
    args = parser.parse_args(argv)
    if not args.header or not args.signing_key:
        parser.error("--header and --signing-key are required")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    issuer = DevTokenIssuer(signing_key=args.signing_key)
    asyncio.run(_serve_until_signalled(issuer, args.header, args.client_id, args.host, args.port))


if __name__ == "__main__":
    main()
