"""Latency a bearer token adds to a request: the same search with token verification and with the
verification dependency replaced by a fixed admin principal, interleaved.

Runs the API in-process against the engines (`make run`'s order of preference), with a local JWKS file and
a fresh ES256 token, and reports the median and p95 of each. Usage: `python -m benchmarks.token_verification
[--requests N]`. Also times `TokenVerifier.verify` alone (keys cached).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from setaccounts.auth.tokens import TokenVerifier
from setaccounts.settings import Settings
from setaccounts.topics import create_topics
from setaccounts_api.app import create_app
from setaccounts_api.security import authenticate
from setaccounts_dev.devkeys import DEV_AUDIENCE, DEV_ISSUER, JWKS_FILE, claims_for, ensure_dev_key
from setaccounts_dev.engines import engines


def summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"{name:<28} median {statistics.median(ordered) * 1e3:7.3f} ms   p95 {p95 * 1e3:7.3f} ms"


async def timed(call: object, n: int) -> list[float]:
    timings = []
    for _ in range(n):
        started = time.perf_counter()
        await call()  # type: ignore[operator]
        timings.append(time.perf_counter() - started)
    return timings


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as keys, engines() as found:
        key = ensure_dev_key(Path(keys))
        run = uuid.uuid4().hex[:8]
        settings = Settings(
            **found.settings(),
            mongodb_database=f"bench_auth_{run}",
            topic_prefix=f"bench{run}.",
            replication_factor=1,  # the development engines are one broker each, as in `isolated_settings`
            min_insync_replicas=1,
            auth_issuer=DEV_ISSUER,
            auth_audience=DEV_AUDIENCE,
            auth_jwks_file=str(Path(keys) / JWKS_FILE),
            trusted_hosts="bench",
        )
        await create_topics(settings)
        token = key.sign(claims_for("bench", admin=True))
        verifier = TokenVerifier(settings)
        await verifier.verify(token)
        verify_only = await timed(lambda: verifier.verify(token), requests)

        app = create_app(settings)
        admin = await verifier.verify(token)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                auth = {"Authorization": f"Bearer {token}"}

                async def search() -> None:
                    (
                        await client.get("/fhir/R4/Patient", params={"_count": "1"}, headers=auth)
                    ).raise_for_status()

                await timed(search, 20)  # warm up
                verified: list[float] = []
                skipped: list[float] = []
                for _ in range(requests // 10):  # interleaved, so load on the machine hits both alike
                    verified += await timed(search, 10)
                    app.dependency_overrides[authenticate] = lambda: admin
                    skipped += await timed(search, 10)
                    app.dependency_overrides.clear()
    print(summary("TokenVerifier.verify", verify_only))
    print(summary("search, token verified", verified))
    print(summary("search, verification skipped", skipped))
    added = statistics.median(verified) - statistics.median(skipped)
    print(f"token verification adds {added * 1e3:.3f} ms per request (median difference)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    asyncio.run(main(parser.parse_args().requests))
