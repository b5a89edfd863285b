"""Both commerce platforms behind one description, for the tests that assert the same behaviour of
each: the emulator, the source settings, how to change a product, and how the request log shows a
page, a probe or a listing. Tests take the `platform` fixture (parametrized over both) and open a
`Shop` with `open_shop` (import `platform_fixture` and `open_shop_fixture`); what only one adapter does stays in that platform's own test files.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.config import SourceSettings
from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig
from syncd.emulator.adobe.app import AdobeEmulator
from syncd.emulator.americommerce.app import AmeriCommerceEmulator
from syncd.runtime import Runtime
from syncd.store.base import RunKind
from syncd.sync import SyncResult
from tests.support import ac_source, adobe_source, query, settings_for, until

Api = AdobeEmulator | AmeriCommerceEmulator
ADOBE_GROUP0 = "searchCriteria[filter_groups][0][filters][0]"
AC_TOKEN = "ac-console-token"


@dataclass(frozen=True)
class Platform:
    """What differs between the platforms: the emulator, the source, the catalog's field names,
    how the request log shows a probe and a sku listing, and how a process is configured."""

    name: str
    emulator: Callable[..., EmulatorConfig]
    """`emulator(products, seed=11, **options)`: the emulator's configuration."""
    source: Callable[..., SourceSettings]
    api: Callable[[Emulator], Api]
    product: Callable[[str, str, float], dict[str, Any]]
    """A new product's fields in the catalog (sku, name, price)."""
    name_field: str
    time_of: Callable[[str], datetime]
    """The instant a catalog time field (as the platform writes it) stands for."""
    is_probe: Callable[[dict[str, str]], bool]
    listing: str
    fetched: Callable[[Api], list[str]]
    """What the verification fetched by key, in request order (Adobe: skus, AmeriCommerce: ids)."""
    fetch_key: Callable[[list[str], int], str]
    """How the product at `index` of the seeded catalog's skus shows in `fetched`."""
    per_incremental_page: int
    """New products an incremental page after the first brings (AmeriCommerce's inclusive cursor
    reads the previous page's last product again)."""
    section: Callable[[Emulator], str]
    """The source's TOML section (after name and schedule) for a `syncd` process."""
    secret_env: str
    secret: str
    """The source's secret, given to a process by environment and never to be printed."""


def _adobe_section(emu: Emulator) -> str:
    adobe = emu.adobe.config
    return f"""kind = "adobe_commerce"
base_url = "{emu.url}"

[sources.auth]
token_url = "{emu.ims_token_url}"
client_id = "{adobe.client_id}"
org_id = "{adobe.org_id}"
"""


def _ac_section(emu: Emulator) -> str:
    return f"""kind = "americommerce"
base_url = "{emu.url}"

[sources.auth]
auth_scheme = "current"
"""


def _adobe_config(products: int, seed: int = 11, **options: Any) -> EmulatorConfig:
    return EmulatorConfig(adobe=AdobeConfig(products=products, **options), seed=seed)


def _ac_config(products: int, seed: int = 11, **options: Any) -> EmulatorConfig:
    options.setdefault("static_tokens", (AC_TOKEN,))
    options.setdefault("call_limit", 100_000)  # no binding call limit
    return EmulatorConfig(
        americommerce=AmeriCommerceConfig(products=products, **options), seed=seed
    )


ADOBE = Platform(
    name="adobe",
    emulator=_adobe_config,
    source=adobe_source,
    api=lambda emu: emu.adobe,
    product=lambda sku, name, price: {"sku": sku, "name": name, "price": price},
    name_field="name",
    time_of=lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC),  # Magento's UTC text
    is_probe=lambda q: q.get("searchCriteria[sortOrders][0][field]") == "created_at",
    listing="items[id,sku],total_count",
    fetched=lambda api: [
        r.query[f"{ADOBE_GROUP0}[value]"]
        for r in api.stats.log
        if r.query.get(f"{ADOBE_GROUP0}[field]") == "sku"
    ],
    fetch_key=lambda skus, index: skus[index],
    per_incremental_page=10,
    section=_adobe_section,
    secret_env="SYNCD_SECRET_SHOP_CLIENT_SECRET",
    secret="syncd-emulator-secret",
)
AMERICOMMERCE = Platform(
    name="americommerce",
    emulator=_ac_config,
    source=ac_source,
    api=lambda emu: emu.americommerce,
    product=lambda sku, name, price: {"item_number": sku, "item_name": name, "price": price},
    name_field="item_name",
    time_of=datetime.fromisoformat,  # with the store's offset
    is_probe=lambda q: q.get("sort") == "-created_at",
    listing="id,item_number",
    fetched=lambda api: [
        r.query["id"] for r in api.stats.log if r.query.get("id", "").startswith("eq:")
    ],
    fetch_key=lambda skus, index: f"eq:{index + 1}",  # the seeded catalog's ids count from 1
    per_incremental_page=9,
    section=_ac_section,
    secret_env="SYNCD_SECRET_SHOP_STATIC_TOKEN",
    secret=AC_TOKEN,
)
PLATFORMS = [ADOBE, AMERICOMMERCE]


@dataclass
class Shop:
    """One platform's emulator, its API and the database a test syncs it into."""

    platform: Platform
    emu: Emulator
    api: Api
    db: Path

    async def sync(self, kind: RunKind | None = None, **source: Any) -> SyncResult:
        source.setdefault("incremental_overlap", 0)
        settings = settings_for(self.db, self.platform.source(self.emu, **source))
        async with Runtime(settings) as runtime:
            return await runtime.sync("shop", kind)

    def probes(self) -> list[int]:
        """Positions (1-based) in the request log of the catalog probes."""
        return [n for n, r in enumerate(self.api.stats.log, 1) if self.platform.is_probe(r.query)]

    def listings(self) -> int:
        return sum(r.query.get("fields") == self.platform.listing for r in self.api.stats.log)

    def fetched(self) -> list[str]:
        return self.platform.fetched(self.api)

    def tombstoned(self) -> set[str]:
        rows = query(self.db, "SELECT sku FROM products WHERE deleted_at IS NOT NULL")
        return {r[0] for r in rows}

    def watermark(self) -> tuple[datetime, int | None]:
        """The stored watermark: its time and the id after which the keyset goes on (if any)."""
        (row,) = query(self.db, "SELECT watermark FROM source_state WHERE source='shop'")
        mark = json.loads(row[0])
        return datetime.fromisoformat(mark["since"]), mark.get("after_id")

    def updated_at(self, sku: str) -> datetime:
        """When the catalog says `sku` last changed."""
        return self.platform.time_of(self.api.catalog.get(sku)["updated_at"])

    def insert(self, sku: str, name: str, price: float) -> None:
        self.api.catalog.insert(**self.platform.product(sku, name, price))

    def rename(self, sku: str, name: str) -> None:
        fields: dict[str, Any] = {self.platform.name_field: name}
        self.api.catalog.update(sku, **fields)

    async def mutate_when(self, after_requests: int, action: Callable[[], None]) -> None:
        """Run `action` once the store has served `after_requests` more product requests."""
        start = self.api.stats.requests
        await until(lambda: self.api.stats.requests - start >= after_requests)
        action()


OpenShop = Callable[..., Awaitable[Shop]]
"""`open_shop(products, **emulator_options)`."""


# Test modules import these fixtures under their function names (the fixture names differ, so
# that a test's parameter does not shadow an import).
@pytest.fixture(name="platform", params=PLATFORMS, ids=lambda p: p.name)
def platform_fixture(request: pytest.FixtureRequest) -> Platform:
    """Each platform in turn."""
    chosen: Platform = request.param
    return chosen


@pytest.fixture(name="open_shop")
async def open_shop_fixture(platform: Platform, tmp_path: Path) -> AsyncIterator[OpenShop]:
    """Start the platform's emulator (real clock) with `n` products; closed at teardown."""
    emulators: list[Emulator] = []

    async def start(products: int, **options: Any) -> Shop:
        emu = Emulator(platform.emulator(products, **options))
        await emu.start()
        emulators.append(emu)
        return Shop(platform, emu, platform.api(emu), tmp_path / "s.db")

    yield start
    for emu in emulators:
        await emu.close()
