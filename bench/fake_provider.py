"""A fast fake Twilio for the benchmark: answers every send after a fixed latency.

    python bench/fake_provider.py --port 8901 --latency-ms 100

Routes:
- ``POST /2010-04-01/Accounts/{sid}/Messages.json``: what the twilio plugin calls; a
  201 JSON receipt shaped like Twilio's.
- ``GET /2010-04-01/Accounts/{sid}/Balance.json``: a positive balance.
- ``POST /direct`` (any method): the same latency and the same receipt, for measuring
  the provider alone with wrk (the ceiling the service is compared with).
- ``GET /-/stats``: how many sends were answered, to check nothing was lost.

One asyncio process: a request costs it a few tens of microseconds, so it serves far
more than the service it stands behind (the bench checks this and reports it).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import os
import time

from aiohttp import web


class FakeTwilio:
    """Handlers sharing one latency and one counter."""

    def __init__(self, latency_ms: float) -> None:
        self.latency = max(0.0, latency_ms) / 1000
        self.sends = 0
        self._second = 0
        self._date = ""

    def _date_created(self) -> str:
        # Twilio's RFC 2822 form, made once a second: formatting is not what is measured.
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._date = email.utils.formatdate(now, localtime=False).replace("-0000", "+0000")
        return self._date

    async def send(self, request: web.Request) -> web.Response:
        await request.read()
        if self.latency:
            await asyncio.sleep(self.latency)
        self.sends += 1
        body = json.dumps({
            "sid": "SM" + os.urandom(16).hex(),
            "status": "queued",
            "num_segments": "1",
            "date_created": self._date_created(),
        })
        return web.Response(status=201, text=body, content_type="application/json")

    async def balance(self, request: web.Request) -> web.Response:
        return web.json_response({"balance": "1000.00", "currency": "USD"})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"sends": self.sends, "latency_ms": self.latency * 1000})


def make_app(latency_ms: float) -> web.Application:
    fake = FakeTwilio(latency_ms)
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", fake.send)
    app.router.add_get("/2010-04-01/Accounts/{sid}/Balance.json", fake.balance)
    app.router.add_route("*", "/direct", fake.send)
    app.router.add_get("/-/stats", fake.stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the fake provider listens on loopback only")
    try:  # a faster event loop when present; the stdlib one is plenty too
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(args.latency_ms), host=args.host, port=args.port,
                access_log=None, backlog=2048, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
