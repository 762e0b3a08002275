"""Concurrent streams: N clients, each sending a message and following its own reply's SSE stream.

The echo provider writes 40 tokens at 20 tokens/s, each stamped with the time it was made
(`t`). A client measures the first event after its POST (first-event latency) and, for every
token, receive time minus `t` (relay latency: worker -> Redis -> API -> client). Clients
start spread over one second. The figure is the largest N tried whose first-event p99 is
under 200 ms and token relay p99 under 10 ms.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from urllib.parse import urlsplit

from bench.harness import Environment, Figure, Results, percentile

SECTION = "streams"


async def _http(host: str, port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def _client(url: str, token: str, delay: float, out: dict) -> None:
    await asyncio.sleep(delay)
    parts = urlsplit(url)
    body = json.dumps({"message": "stream please"}).encode()
    started = time.time()
    reader, writer = await _http(parts.hostname, parts.port, (
        f"POST /api/chat/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
    raw = await reader.read()
    writer.close()
    sent = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    reader, writer = await _http(parts.hostname, parts.port,
                                 f"GET {sent['events_url']} HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                                 .encode())
    buffer, first = b"", None
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout=30)
            if not chunk:
                break
            now = time.time()
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                event = data = None
                for line in block.split(b"\n"):
                    if line.startswith(b"event: "):
                        event = line[7:].decode()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                if event is None:
                    continue
                if first is None:
                    first = now - started
                    out["first"].append(first)
                if event == "token":
                    out["relay"].append(now - json.loads(data)["t"])
                elif event in ("done", "error", "cancelled"):
                    out["ended"] += event == "done"
                    return
    finally:
        writer.close()


async def _round(url: str, tokens: list[str], n: int) -> dict:
    out = {"first": [], "relay": [], "ended": 0}
    rng = random.Random(n)
    await asyncio.gather(*[_client(url, tokens[i % len(tokens)], rng.random(), out) for i in range(n)],
                         return_exceptions=True)
    return out


def run(env: Environment, results: Results, quick: bool = False) -> None:
    sizes = [10, 25] if quick else [50, 100, 250, 500, 1000]
    stack = env.stack("streams", LLM_PROVIDER="echo", LLM_ECHO_RATE="20", LLM_ECHO_TOKENS="40")
    stack.start_worker(role="llm", queues="llm", pool="gevent", concurrency=max(sizes) + 50)
    stack.start_web(workers=2)
    tokens = [env.user()[1] for _ in range(20)]
    # One stream at a time: the pipeline's own latency to the first token (echo's is ~0).
    singles = {"first": [], "relay": [], "ended": 0}
    for i in range(5 if quick else 30):
        out = asyncio.run(_round(stack.url, tokens, 1))
        singles["first"] += out["first"]
        singles["relay"] += out["relay"]
    results.add(Figure(SECTION, "one stream: POST to first token event, p50", percentile(singles["first"], 50) * 1000,
                       "ms", target="< 20 ms (pipeline overhead; echo's time to first token is ~0)",
                       met=percentile(singles["first"], 50) * 1000 < 20,
                       note=f"p99 {percentile(singles['first'], 99) * 1000:.1f} ms; token relay p50 "
                            f"{percentile(singles['relay'], 50) * 1000:.2f} ms, p99 {percentile(singles['relay'], 99) * 1000:.2f} ms"))
    best = 0
    for n in sizes:
        out = asyncio.run(_round(stack.url, tokens, n))
        first_p99 = percentile(out["first"], 99) * 1000
        relay_p99 = percentile(out["relay"], 99) * 1000
        ok = out["ended"] == n and first_p99 < 200 and relay_p99 < 10
        print(f"    N={n}: completed {out['ended']}/{n}, first-event p99 {first_p99:.1f} ms, "
              f"relay p99 {relay_p99:.2f} ms, relay p50 {percentile(out['relay'], 50) * 1000:.2f} ms", flush=True)
        results.add(Figure(SECTION, f"N={n}: first-event p99", first_p99, "ms", target="< 200 ms",
                           met=first_p99 < 200, note=f"{out['ended']}/{n} streams completed"))
        results.add(Figure(SECTION, f"N={n}: token relay p99", relay_p99, "ms", target="< 10 ms", met=relay_p99 < 10))
        if ok:
            best = n
        else:
            break
    results.add(Figure(SECTION, "largest N meeting both", best, "streams", target=">= 1000", met=best >= 1000,
                       note="gunicorn gevent x2; llm worker with a gevent pool; echo 20 tokens/s x 40"))
    stack.close()
