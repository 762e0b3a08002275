"""Concurrent streams: N clients, each sending a message and following its own reply's SSE stream.

The echo provider writes 40 tokens at 20 tokens/s, each stamped with the time it was made
(`t`). A client measures the first event after its POST (first-event latency), the first
`token` event, and for every token, receive time minus its `t` (relay latency: worker ->
Redis -> API -> client). A `token` event may carry one token (`{"delta", "t"}`) or several
(`{"tokens": [{"delta", "t"}, ...]}`): each counts as a relayed token with its own `t`, so a
grouping window counts in the relay latency. Clients start spread over one second.

Each figure stands beside the bare relay (bench/bare_app.py) with the same clients and N, in
the same run: first-event p99 <= 2x, token relay p99 <= 1.5x, and the server's CPU time per
relayed token (every process we run: API, llm worker and Redis; the bare relay's API, whose
publisher threads are in it, and Redis) <= 1.0x. One stream alone: POST to first token <= 2x.
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
    buffer, first, first_token = b"", None, None
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
                    tokens = _tokens(json.loads(data))
                    if first_token is None and tokens:
                        first_token = now - started
                        out["first_token"].append(first_token)
                    out["relay"] += [now - tok["t"] for tok in tokens]
                elif event in ("done", "error", "cancelled"):
                    out["ended"] += event == "done"
                    return
    finally:
        writer.close()


def _tokens(data: dict) -> list[dict]:
    """The tokens of one `token` event: one (`{"delta", "t"}`) or a group (`{"tokens": [...]}`)."""
    return list(data["tokens"]) if "tokens" in data else [data]


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


SERVER_ROLES = ("API", "llm worker", "Redis")  # every server process of a stack (the bare relay has no worker)


def _cpu_by_role(stack, redis_pid: int) -> dict[str, float]:
    pids = stack.pids()
    return {"API": _cpu_seconds(pids.get("web", [])), "llm worker": _cpu_seconds(pids.get("llm", [])),
            "Redis": _cpu_seconds([redis_pid]), "clients": time.process_time()}


async def _round(url: str, tokens: list[str], n: int, post_path: str = "/api/chat/send") -> dict:
    out = {"first": [], "first_token": [], "relay": [], "ended": 0}
    rng = random.Random(n)
    await asyncio.gather(*[_client(url, tokens[i % len(tokens)], rng.random(), out, post_path) for i in range(n)],
                         return_exceptions=True)
    return out


def _measured_round(name: str, stack, redis_pid: int, tokens: list[str], n: int, post_path: str) -> dict:
    """One round of N clients, with its percentiles and the CPU each process spent per relayed token."""
    cpu_before, wall = _cpu_by_role(stack, redis_pid), time.perf_counter()
    out = asyncio.run(_round(stack.url, tokens, n, post_path))
    wall = time.perf_counter() - wall
    cpu = {role: used - cpu_before[role] for role, used in _cpu_by_role(stack, redis_pid).items()}
    relayed = max(1, len(out["relay"]))
    server = sum(cpu[role] for role in SERVER_ROLES)
    out.update(first_p99=percentile(out["first"], 99) * 1000, relay_p99=percentile(out["relay"], 99) * 1000,
               relay_p50=percentile(out["relay"], 50) * 1000, wall=wall, busy=sum(cpu.values()),
               server_us=server / relayed * 1e6, relayed=len(out["relay"]),
               cpu_note=", ".join(f"{role} {used / relayed * 1e6:.0f}" for role, used in cpu.items() if used > 0))
    print(f"    {name} N={n}: completed {out['ended']}/{n}, first-event p99 {out['first_p99']:.1f} ms, relay p99 "
          f"{out['relay_p99']:.2f} ms, p50 {out['relay_p50']:.2f} ms; server CPU per relayed token "
          f"{out['server_us']:.0f} us ({out['cpu_note']}); busy {out['busy']:.1f} CPU-s in {wall:.1f} s", flush=True)
    return out


def _ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000


def run(env: Environment, results: Results, quick: bool = False) -> None:
    """The section's figures (module docstring)."""
    sizes = [10, 25] if quick else [100, 250, 500]
    users = [token for _, token in env.users(10 if quick else 50)]
    # Each user follows up to N / len(users) streams at once: the per-user cap is raised above that.
    stack = env.stack("streams", LLM_PROVIDER="echo", LLM_ECHO_RATE="20", LLM_ECHO_TOKENS="40",
                      MAX_STREAMS_PER_USER=str(max(sizes)))
    stack.start_worker(role="llm", queues="llm", pool="gevent", concurrency=max(sizes) + 50)
    stack.start_web(workers=2)
    # The same clients against the bare relay (bench/bare_app.py): the machine's floor.
    bare = env.stack("bare-streams", BARE_TOKENS="40", BARE_RATE="20")
    bare.start_web(workers=2, app="bench.bare_app:create_app()", health="/bare")
    where = {"ours": (stack, "/api/chat/send"), "bare": (bare, "/bare/stream")}
    # One stream at a time: the pipeline's own latency to the first token (echo's is ~0).
    singles = {name: {"first_token": [], "relay": []} for name in where}
    for _ in range(5 if quick else 30):
        for name, (s, path) in where.items():
            out = asyncio.run(_round(s.url, users, 1, path))
            singles[name]["first_token"] += out["first_token"]
            singles[name]["relay"] += out["relay"]
    ours, base = singles["ours"], singles["bare"]
    first, bare_first = _ms(ours["first_token"], 50), _ms(base["first_token"], 50)
    results.add(Figure(SECTION, "one stream: POST to first token event, p50", first, "ms", baseline=bare_first,
                       baseline_name="bare relay, one stream", target="<= 2 x bare relay", met=first <= 2 * bare_first,
                       note=f"p99 {_ms(ours['first_token'], 99):.1f} ms (bare {_ms(base['first_token'], 99):.1f} ms); "
                            f"token relay p50 {_ms(ours['relay'], 50):.2f} ms, p99 {_ms(ours['relay'], 99):.2f} ms "
                            f"(bare p50 {_ms(base['relay'], 50):.2f} ms, p99 {_ms(base['relay'], 99):.2f} ms); "
                            "echo's time to first token is ~0"))
    for n in sizes:
        rounds = {name: _measured_round(name, s, env.redis_proc.pid, users, n, path)
                  for name, (s, path) in where.items()}
        ours, base = rounds["ours"], rounds["bare"]
        same = f"bare relay, N={n}"
        results.add(Figure(SECTION, f"N={n}: first-event p99", ours["first_p99"], "ms", baseline=base["first_p99"],
                           baseline_name=same, target="<= 2 x bare relay",
                           met=ours["first_p99"] <= 2 * base["first_p99"],
                           note=f"{ours['ended']}/{n} streams completed (bare {base['ended']}/{n}); "
                                f"{len(users)} users"))
        results.add(Figure(SECTION, f"N={n}: token relay p99", ours["relay_p99"], "ms", baseline=base["relay_p99"],
                           baseline_name=same, target="<= 1.5 x bare relay",
                           met=ours["relay_p99"] <= 1.5 * base["relay_p99"],
                           note=f"p50 {ours['relay_p50']:.2f} ms (bare {base['relay_p50']:.2f} ms); "
                                f"{ours['relayed']} tokens relayed (bare {base['relayed']})"))
        results.add(Figure(SECTION, f"N={n}: server CPU per relayed token", ours["server_us"], "us",
                           baseline=base["server_us"], baseline_name=same, target="<= 1.0 x bare relay",
                           met=ours["server_us"] <= base["server_us"],
                           note=f"API + llm worker + Redis, POSTs and stream set-up included; per process (us): "
                                f"{ours['cpu_note']}; bare relay (API with its publisher threads + Redis): "
                                f"{base['cpu_note']}; clients not counted in the figure; busy {ours['busy']:.1f} "
                                f"CPU-s in {ours['wall']:.1f} s on {os.cpu_count()} CPUs"))
    bare.close()
    stack.close()
