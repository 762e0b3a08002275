"""Concurrent streams: N clients, each sending a message and following its own reply's SSE stream.

The echo provider writes 40 tokens at 20 tokens/s, each stamped with the time it was made
(`t`). A client measures the first event after its POST (first-event latency) and, for every
token, receive time minus `t` (relay latency: worker -> Redis -> API -> client). Clients
start spread over one second. The figure is the largest N tried whose first-event p99 is
under 200 ms and token relay p99 under 10 ms (and every smaller N's too); larger N are still
measured and reported until streams stop completing or first events take over 5 s.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.harness import Environment, Figure, Results, percentile

SECTION = "streams"


async def _http(host: str, port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def _client(url: str, token: str, delay: float, out: dict, post_path: str) -> None:
    await asyncio.sleep(delay)
    parts = urlsplit(url)
    body = json.dumps({"message": "stream please"}).encode()
    started = time.time()
    reader, writer = await _http(parts.hostname, parts.port, (
        f"POST {post_path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
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


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def _cpu_by_role(stack, redis_pid: int) -> dict[str, float]:
    pids = stack.pids()
    return {"API": _cpu_seconds(pids.get("web", [])), "llm worker": _cpu_seconds(pids.get("llm", [])),
            "Redis": _cpu_seconds([redis_pid]), "clients": time.process_time()}


async def _round(url: str, tokens: list[str], n: int, post_path: str = "/api/chat/send") -> dict:
    out = {"first": [], "relay": [], "ended": 0}
    rng = random.Random(n)
    await asyncio.gather(*[_client(url, tokens[i % len(tokens)], rng.random(), out, post_path) for i in range(n)],
                         return_exceptions=True)
    return out


def _measured_round(stack, redis_pid: int, tokens: list[str], n: int, post_path: str) -> dict:
    """One round of N clients, with its percentiles and the CPU each role spent per relayed token."""
    cpu_before, wall = _cpu_by_role(stack, redis_pid), time.perf_counter()
    out = asyncio.run(_round(stack.url, tokens, n, post_path))
    wall = time.perf_counter() - wall
    cpu = {role: used - cpu_before[role] for role, used in _cpu_by_role(stack, redis_pid).items()}
    relayed = max(1, len(out["relay"]))
    out.update(first_p99=percentile(out["first"], 99) * 1000, relay_p99=percentile(out["relay"], 99) * 1000,
               relay_p50=percentile(out["relay"], 50) * 1000, wall=wall, busy=sum(cpu.values()),
               cpu_note=", ".join(f"{role} {used / relayed * 1e6:.0f}" for role, used in cpu.items() if used > 0))
    out["ok"] = out["ended"] == n and out["first_p99"] < 200 and out["relay_p99"] < 10
    out["served"] = out["ended"] == n and out["first_p99"] <= 5000
    print(f"    {'ours' if post_path.startswith('/api') else 'bare'} N={n}: completed {out['ended']}/{n}, first-event "
          f"p99 {out['first_p99']:.1f} ms, relay p99 {out['relay_p99']:.2f} ms, p50 {out['relay_p50']:.2f} ms; "
          f"CPU per relayed token (us): {out['cpu_note']}; busy {out['busy']:.1f} CPU-s in {wall:.1f} s", flush=True)
    return out


def run(env: Environment, results: Results, quick: bool = False) -> None:
    sizes = [10, 25] if quick else [50, 100, 250, 500, 1000]
    # Each of the 20 users follows up to N/20 streams at once.
    stack = env.stack("streams", LLM_PROVIDER="echo", LLM_ECHO_RATE="20", LLM_ECHO_TOKENS="40",
                      MAX_STREAMS_PER_USER=str(max(sizes)))
    stack.start_worker(role="llm", queues="llm", pool="gevent", concurrency=max(sizes) + 50)
    stack.start_web(workers=2)
    tokens = [env.user()[1] for _ in range(20)]
    # The same clients against the bare relay (bench/bare_app.py): the machine's floor.
    bare = env.stack("bare-streams", BARE_TOKENS="40", BARE_RATE="20")
    bare.start_web(workers=2, app="bench.bare_app:create_app()", health="/bare")
    # One stream at a time: the pipeline's own latency to the first token (echo's is ~0).
    singles = {name: {"first": [], "relay": []} for name in ("ours", "bare")}
    for _ in range(5 if quick else 30):
        for name, where, path in (("ours", stack, "/api/chat/send"), ("bare", bare, "/bare/stream")):
            out = asyncio.run(_round(where.url, tokens, 1, path))
            singles[name]["first"] += out["first"]
            singles[name]["relay"] += out["relay"]
    ours, base = singles["ours"], singles["bare"]
    first_p50 = percentile(ours["first"], 50) * 1000
    results.add(Figure(SECTION, "one stream: POST to first token event, p50", first_p50, "ms",
                       baseline=percentile(base["first"], 50) * 1000, baseline_name="bare relay",
                       target="< 20 ms (pipeline overhead; echo's time to first token is ~0)", met=first_p50 < 20,
                       note=f"p99 {percentile(ours['first'], 99) * 1000:.1f} ms; token relay p50 "
                            f"{percentile(ours['relay'], 50) * 1000:.2f} ms, "
                            f"p99 {percentile(ours['relay'], 99) * 1000:.2f} ms "
                            f"(bare relay p50 {percentile(base['relay'], 50) * 1000:.2f} ms, "
                            f"p99 {percentile(base['relay'], 99) * 1000:.2f} ms)"))
    best = {"ours": 0, "bare": 0}
    going = {"ours": True, "bare": True}
    for n in sizes:
        rounds = {}
        for name, where, path in (("ours", stack, "/api/chat/send"), ("bare", bare, "/bare/stream")):
            if going[name]:
                rounds[name] = _measured_round(where, env.redis_proc.pid, tokens, n, path)
                if rounds[name]["ok"] and best[name] == (sizes[sizes.index(n) - 1] if sizes.index(n) else 0):
                    best[name] = n
                going[name] = rounds[name]["served"]  # past what it serves at all, larger N only take longer
        ours, base = rounds.get("ours"), rounds.get("bare")
        if ours is None:
            continue
        results.add(Figure(SECTION, f"N={n}: first-event p99", ours["first_p99"], "ms",
                           baseline=base["first_p99"] if base else None, baseline_name="bare relay",
                           target="< 200 ms", met=ours["first_p99"] < 200,
                           note=f"{ours['ended']}/{n} streams completed; CPU per relayed token in us (POST and stream "
                                f"set-up included): {ours['cpu_note']}; busy {ours['busy']:.1f} CPU-s in "
                                f"{ours['wall']:.1f} s on {os.cpu_count()} CPUs"
                                + (f"; bare relay: {base['cpu_note']}" if base else "")))
        results.add(Figure(SECTION, f"N={n}: token relay p99", ours["relay_p99"], "ms",
                           baseline=base["relay_p99"] if base else None, baseline_name="bare relay",
                           target="< 10 ms", met=ours["relay_p99"] < 10,
                           note=f"p50 {ours['relay_p50']:.2f} ms"
                           + (f" (bare {base['relay_p50']:.2f} ms)" if base else "")))
        if not going["ours"] and not going["bare"]:
            break
    results.add(Figure(SECTION, "largest N meeting both", best["ours"], "streams", baseline=best["bare"],
                       baseline_name="bare relay, same clients", target=">= 1000", met=best["ours"] >= 1000,
                       note="gunicorn gevent x2; llm worker with a gevent pool; echo 20 tokens/s x 40; sizes tried "
                            f"{sizes}"))
    bare.close()
    stack.close()
