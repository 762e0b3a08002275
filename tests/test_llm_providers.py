"""LLM providers against real servers, and whole stacks answering with each of them.

- local: llama.cpp in the worker with SmolLM2-135M (scripts/ensure-llm provides both);
- openai: llama-cpp-python's own OpenAI-compatible server with the same model;
- tutornet: a small server that speaks that protocol exactly (tests/fake_tutornet.py);
- failures: a provider that is down, and one that sends garbage or hangs up mid-stream.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import requests

from tests.fake_tutornet import FakeTutorNet
from tests.support import bearer, free_port, wait_until

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]


def model_path() -> str | None:
    from worker.providers.model_files import smollm2_path
    path = os.environ.get("LLM_MODEL_PATH") or smollm2_path()
    return str(path) if path and os.path.isfile(path) else None


needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or model_path() is None,
    reason="llama-cpp-python or the SmolLM2 GGUF is missing: run scripts/ensure-llm (make test does)")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server with the small model, on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model_path(), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)

    def up():
        try:
            return requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).ok
        except requests.RequestException:
            return False
    wait_until(up, timeout=120, what="llama_cpp.server", proc=proc, log=log)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def tutornet():
    with FakeTutorNet() as server:
        yield server


def provider(monkeypatch, **env):
    """A provider instance built from these settings (read at construction)."""
    from shared.settings import get_settings
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        from worker.providers.llm import _cache, get_provider
        _cache.clear()
        return get_provider()
    finally:
        for k in env:
            monkeypatch.delenv(k)
        get_settings.cache_clear()


def collect(p, messages=MESSAGES, max_tokens=16) -> list[str]:
    return list(p.stream(messages, max_tokens=max_tokens, temperature=0.0, user_id="u1", session_id="s1"))


@needs_llama
def test_openai_provider_streams_from_llama_cpp_server(monkeypatch, llama_server):
    p = provider(monkeypatch, LLM_PROVIDER="openai", LLM_BASE_URL=llama_server)
    deltas = collect(p)
    assert len(deltas) > 1 and "".join(deltas).strip()


@needs_llama
def test_local_provider_generates_with_the_real_model(monkeypatch):
    p = provider(monkeypatch, LLM_PROVIDER="local")
    deltas = collect(p, max_tokens=12)
    assert 1 < len(deltas) <= 12 and "".join(deltas).strip()


def test_tutornet_provider_speaks_the_protocol(monkeypatch, tutornet):
    p = provider(monkeypatch, LLM_PROVIDER="tutornet", LLM_BASE_URL=tutornet.url)
    text = "".join(collect(p))
    assert text.startswith("TutorNet heard:") and "Say hello." in text
    assert tutornet.requests[-1] == {"input": "Say hello.", "session_id": "s1", "user_id": "u1"}


def test_provider_errors_are_sorted(monkeypatch, tutornet):
    from worker.providers.llm import LLMError, LLMUnavailable
    down = provider(monkeypatch, LLM_PROVIDER="openai", LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(LLMUnavailable):
        collect(down)
    tn = provider(monkeypatch, LLM_PROVIDER="tutornet", LLM_BASE_URL=tutornet.url)
    for word in ("garbage", "hang-up"):
        with pytest.raises(LLMError):
            collect(tn, [{"role": "user", "content": f"please {word}"}])


def chat_through(stack, users, message: str, timeout: float = 60) -> tuple[dict, dict]:
    u = users()
    h = bearer(u["access_token"])
    r = requests.post(f"{stack.url}/api/chat/send", headers=h, json={"message": message})
    assert r.status_code == 202, r.text
    sent = r.json()
    job = wait_until(lambda: (lambda j: j if j["state"] in ("succeeded", "failed") else None)(
        requests.get(stack.url + sent["status_url"]).json()), timeout=timeout, what="the chat job")
    history = requests.get(f"{stack.url}/api/chat/history", headers=h,
                           params={"conversation_id": sent["conversation_id"]}).json()
    return job, history


@needs_llama
def test_stack_answers_with_the_local_model(make_stack, users):
    stack = make_stack("local", LLM_PROVIDER="local", LLM_MAX_TOKENS="24")
    stack.start_worker(concurrency=1)
    stack.start_web()
    job, history = chat_through(stack, users, "What is 2 + 2?", timeout=120)
    assert job["state"] == "succeeded", job
    reply = history["items"][-1]
    assert reply["role"] == "assistant" and reply["status"] == "complete" and reply["content"].strip()
    assert job["result"]["message"]["content"] == reply["content"]


@needs_llama
def test_stack_answers_through_an_openai_compatible_server(make_stack, users, llama_server):
    stack = make_stack("openai", LLM_PROVIDER="openai", LLM_BASE_URL=llama_server, LLM_MAX_TOKENS="24")
    stack.start_worker()
    stack.start_web()
    job, history = chat_through(stack, users, "Name a colour.", timeout=120)
    assert job["state"] == "succeeded", job
    assert history["items"][-1]["content"].strip()


def test_stack_with_tutornet_and_its_failures(make_stack, users, tutornet):
    stack = make_stack("tutornet", LLM_PROVIDER="tutornet", LLM_BASE_URL=tutornet.url)
    stack.start_worker()
    stack.start_web()
    job, history = chat_through(stack, users, "What is photosynthesis?")
    assert job["state"] == "succeeded"
    assert history["items"][-1]["content"].startswith("TutorNet heard:")
    # Garbage mid-stream: the job fails clearly, both messages stay, the reply keeps its partial text.
    job, history = chat_through(stack, users, "send garbage please")
    assert job["state"] == "failed" and job["error"]["code"] == "llm_error"
    user_msg, reply = history["items"]
    assert user_msg["content"] == "send garbage please"
    assert reply["status"] == "failed" and reply["content"].startswith("TutorNet heard:")


def test_stack_with_the_provider_down(make_stack, users):
    stack = make_stack("down", LLM_PROVIDER="openai", LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
                       LLM_CONNECT_RETRIES="1", LLM_CONNECT_TIMEOUT="0.5")
    stack.start_worker()
    stack.start_web()
    job, history = chat_through(stack, users, "Is anyone there?", timeout=30)
    assert job["state"] == "failed" and job["error"]["code"] == "llm_unavailable" and job["attempts"] == 2
    assert [m["role"] for m in history["items"]] == ["user", "assistant"]
    assert history["items"][0]["content"] == "Is anyone there?" and history["items"][1]["status"] == "failed"
    assert requests.get(f"{stack.url}/api/health").ok  # the API stays up
