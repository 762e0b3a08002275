"""The local LLM through the whole stack, against llama.cpp alone on the same model.

Both generate up to 64 tokens for the same prompt; the rate is tokens from the first to the
last one, per second (time to first token is reported beside it). Three runs of each,
alternated; the figure is the median of each.
"""
from __future__ import annotations

import statistics
import time

import requests

from bench.harness import Environment, Figure, Results

SECTION = "llm"
PROMPT = "Explain in a few sentences why the sky is blue."
TOKENS = 64


def _alone() -> tuple[float, float]:
    from llama_cpp import Llama

    from shared.settings import get_settings
    from worker.providers.model_files import smollm2_path
    model = Llama(model_path=str(smollm2_path()), n_ctx=2048, n_threads=get_settings().LLM_THREADS, verbose=False)
    started = time.perf_counter()
    stamps = []
    for chunk in model.create_chat_completion(messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS,
                                              temperature=0.0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            stamps.append(time.perf_counter())
    del model
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), stamps[0] - started


def _through_stack(url: str, token: str) -> tuple[float, float, int]:
    h = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    sent = requests.post(f"{url}/api/chat/send", headers=h, json={"message": PROMPT}).json()
    stamps = []
    with requests.get(url + sent["events_url"], stream=True, timeout=120) as resp:
        event = None
        for line in resp.iter_lines():
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: ") and event == "token":
                stamps.append(time.perf_counter())
            elif event in ("done", "error"):
                break
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), stamps[0] - started, len(stamps)


def run(env: Environment, results: Results, quick: bool = False) -> None:
    stack = env.stack("llm", LLM_PROVIDER="local", LLM_MAX_TOKENS=str(TOKENS), LLM_TEMPERATURE="0")
    stack.start_worker(role="llm", queues="llm", pool="prefork", concurrency=1)
    stack.start_web(workers=1)
    _, token = env.user()
    _through_stack(stack.url, token)  # loads the model in the worker
    # Alternated, and the median of each: one run of 64 tokens swings by 10% on a shared machine.
    alone, ours = [], []
    for _ in range(1 if quick else 3):
        alone.append(_alone())
        ours.append(_through_stack(stack.url, token))
    alone_rate, alone_ttft = statistics.median(a[0] for a in alone), statistics.median(a[1] for a in alone)
    rate, ttft, n = (statistics.median(o[i] for o in ours) for i in range(3))
    results.add(Figure(SECTION, "local LLM tokens/s through the stack", rate, "tokens/s", baseline=alone_rate,
                       baseline_name="llama.cpp alone", target=">= 0.9 x baseline", met=rate >= 0.9 * alone_rate,
                       note=f"median of {len(ours)} alternated runs of {n:.0f} tokens (ours "
                            f"{', '.join(f'{o[0]:.1f}' for o in ours)}; "
                            f"alone {', '.join(f'{a[0]:.1f}' for a in alone)}); "
                            f"time to first token {ttft * 1000:.0f} ms through the stack (POST included) "
                            f"vs {alone_ttft * 1000:.0f} ms alone; SmolLM2-135M Q4_1"))
    stack.close()
