"""Helpers for the emulator tests: decoded answers, an Adobe caller, searchCriteria builders."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from syncd.emulator import Emulator

StartEmulator = Callable[..., Awaitable[Emulator]]


@dataclass
class Answer:
    """A decoded response."""

    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.text)


@dataclass
class AdobeCaller:
    """Gets IMS tokens and calls the product endpoints with the gateway headers."""

    emu: Emulator
    session: aiohttp.ClientSession

    async def token_answer(self, **overrides: str) -> Answer:
        """POST the client_credentials grant with the configured credentials, overridden."""
        cfg = self.emu.config.adobe
        form = {
            "grant_type": "client_credentials",
            "client_id": cfg.client_id,
            "client_secret": cfg.client_secret,
            "scope": f"openid,AdobeID,{cfg.required_scope}",
        }
        form.update(overrides)
        async with self.session.post(self.emu.ims_token_url, data=form) as response:
            return Answer(response.status, response.headers, await response.text())

    async def token(self) -> str:
        """A fresh access token."""
        answer = await self.token_answer()
        assert answer.status == 200, answer.text
        return str(answer.json()["access_token"])

    async def headers(self, token: str | None = None) -> dict[str, str]:
        """The three headers the ACCS gateway requires."""
        cfg = self.emu.config.adobe
        return {
            "Authorization": f"Bearer {token or await self.token()}",
            "x-api-key": cfg.client_id,
            "x-gw-ims-org-id": cfg.org_id,
        }

    async def get(
        self,
        params: Mapping[str, str] | list[tuple[str, str]],
        headers: Mapping[str, str] | None = None,
        path: str = "/rest/V1/products",
    ) -> Answer:
        """GET a product endpoint."""
        sent = dict(headers) if headers is not None else await self.headers()
        async with self.session.get(self.emu.url + path, params=params, headers=sent) as response:
            return Answer(response.status, response.headers, await response.text())


def criteria(
    page_size: int | None = None,
    page: int | None = None,
    sort: Sequence[tuple[str, str | None]] | None = None,
    groups: Sequence[Sequence[tuple[str, str, str | None]]] | None = None,
    **extra: str,
) -> dict[str, str]:
    """searchCriteria query parameters (sort: (field, direction); groups of (field, value, cond))."""
    params: dict[str, str] = {}
    if page_size is not None:
        params["searchCriteria[pageSize]"] = str(page_size)
    if page is not None:
        params["searchCriteria[currentPage]"] = str(page)
    for i, (field, direction) in enumerate(sort or []):
        params[f"searchCriteria[sortOrders][{i}][field]"] = field
        if direction is not None:
            params[f"searchCriteria[sortOrders][{i}][direction]"] = direction
    for g, group in enumerate(groups or []):
        for f, (field, value, condition) in enumerate(group):
            prefix = f"searchCriteria[filter_groups][{g}][filters][{f}]"
            params[f"{prefix}[field]"] = field
            params[f"{prefix}[value]"] = value
            if condition is not None:
                params[f"{prefix}[condition_type]"] = condition
    if not params:
        params["searchCriteria"] = ""
    params.update(extra)
    return params


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of a string, the AmeriCommerce signature primitive."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class AcCaller:
    """Posts AmeriCommerce OAuth bodies (JSON or form) and calls the products API."""

    emu: Emulator
    session: aiohttp.ClientSession

    async def post(self, path: str, fields: Mapping[str, str], *, form: bool = False) -> Answer:
        """POST `fields` as JSON (default) or form-encoded."""
        url = self.emu.url + path
        kwargs: dict[str, Any] = {"data": dict(fields)} if form else {"json": dict(fields)}
        async with self.session.post(url, **kwargs) as response:
            return Answer(response.status, response.headers, await response.text())

    async def authorize(self, params: Mapping[str, str]) -> URL:
        """GET /api/oauth and return where the store redirects the browser."""
        url = self.emu.url + "/api/oauth"
        async with self.session.get(url, params=params, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            return URL(response.headers["Location"])

    async def get(
        self, path: str = "/api/v1/products", token: str | None = None, **headers: str
    ) -> Answer:
        """GET an API path (query included) with an X-AC-Auth-Token."""
        sent = dict(headers)
        if token is not None:
            sent["X-AC-Auth-Token"] = token
        async with self.session.get(self.emu.url + path, headers=sent) as response:
            return Answer(response.status, response.headers, await response.text())

    async def web_token(self) -> dict[str, Any]:
        """Run the current-scheme web flow to the end and return the token answer."""
        cfg = self.emu.config.americommerce
        redirect = "https://App.example.com/Callback"
        location = await self.authorize(
            {"client_id": cfg.app_id, "scope": cfg.scope, "redirect_uri": redirect}
        )
        code, auth_id = location.query["code"], location.query["auth_id"]
        signature = sha256_hex(cfg.app_secret + code + cfg.app_id + cfg.scope + redirect.lower())
        answer = await self.post(
            "/api/oauth/access_token",
            {"client_id": cfg.app_id, "auth_id": auth_id, "signature": signature},
        )
        assert answer.status == 200, answer.text
        return dict(answer.json())
