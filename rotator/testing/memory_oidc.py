"""The in-memory IAM twin's OpenID Connect providers, as IAM holds them.

``CreateOpenIDConnectProvider`` keeps the URL without its scheme (``https://x/y`` is held
as ``x/y``, the ARN is ``arn:aws:iam::ACCOUNT:oidc-provider/x/y``); a thumbprint is 40 hex
characters and a provider holds at most five (``LimitExceeded``); a second provider for a
URL is ``EntityAlreadyExists``; an unknown ARN is ``NoSuchEntity``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from rotator.testing.memory_state import OidcProvider, State, client_error, ok

MAX_THUMBPRINTS = 5
_THUMBPRINT = re.compile(r"^[0-9A-Fa-f]{40}$")


class OidcMixin(State):
    """``*OpenIDConnectProvider*`` calls."""

    def _oidc(self, action: str, arn: str) -> OidcProvider:
        found = self.oidc_providers.get(arn)
        if found is None:
            raise client_error(
                action, "NoSuchEntity", f"OpenIDConnect Provider not found for arn {arn}", 404
            )
        return found

    def _thumbprints(self, action: str, thumbprints: list[str]) -> list[str]:
        if len(thumbprints) > MAX_THUMBPRINTS:
            raise client_error(
                action,
                "LimitExceeded",
                f"Cannot exceed quota for ThumbprintsPerOpenIdConnectProvider: {MAX_THUMBPRINTS}",
                409,
            )
        if not all(_THUMBPRINT.match(t) for t in thumbprints):
            raise client_error(action, "ValidationError", "a thumbprint is 40 hex characters")
        return list(thumbprints)

    async def create_open_id_connect_provider(
        self,
        *,
        Url: str,
        ThumbprintList: list[str] | None = None,
        ClientIDList: list[str] | None = None,
        Tags: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        self._call("CreateOpenIDConnectProvider")
        parts = urlsplit(Url)
        if parts.scheme != "https" or not parts.netloc:
            raise client_error(
                "CreateOpenIDConnectProvider", "ValidationError", "Invalid Open ID Connect URL"
            )
        url = parts.netloc + parts.path
        arn = f"arn:aws:iam::{self.account}:oidc-provider/{url}"
        if arn in self.oidc_providers:
            raise client_error(
                "CreateOpenIDConnectProvider", "EntityAlreadyExists", f"{url} exists", 409
            )
        self.oidc_providers[arn] = OidcProvider(
            url=url,
            thumbprints=self._thumbprints("CreateOpenIDConnectProvider", ThumbprintList or []),
            client_ids=list(ClientIDList or []),
            created=self.clock(),
            tags={t["Key"]: t["Value"] for t in Tags or []},
        )
        return ok({"OpenIDConnectProviderArn": arn})

    async def get_open_id_connect_provider(
        self, *, OpenIDConnectProviderArn: str
    ) -> dict[str, Any]:
        self._call("GetOpenIDConnectProvider")
        found = self._oidc("GetOpenIDConnectProvider", OpenIDConnectProviderArn)
        return ok(
            {
                "Url": found.url,
                "ClientIDList": list(found.client_ids),
                "ThumbprintList": list(found.thumbprints),
                "CreateDate": found.created,
                "Tags": [{"Key": k, "Value": v} for k, v in found.tags.items()],
            }
        )

    async def list_open_id_connect_providers(self) -> dict[str, Any]:
        self._call("ListOpenIDConnectProviders")
        arns = sorted(self.oidc_providers)
        return ok({"OpenIDConnectProviderList": [{"Arn": a} for a in arns]})

    async def update_open_id_connect_provider_thumbprint(
        self, *, OpenIDConnectProviderArn: str, ThumbprintList: list[str]
    ) -> dict[str, Any]:
        action = "UpdateOpenIDConnectProviderThumbprint"
        self._call(action)
        found = self._oidc(action, OpenIDConnectProviderArn)
        found.thumbprints = self._thumbprints(action, ThumbprintList)
        return ok({})
