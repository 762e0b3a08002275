"""Speech through the API and a real worker: TTS jobs, audio serving, and replies that speak.

The session worker uses espeak-ng (fast); one stack runs the default Piper engine end to end.
"""
from __future__ import annotations

import array
import io
import math
import shutil
import wave

import pytest
import requests

from tests.support import bearer, parse_sse, wait_for_state, wait_until

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is missing: run scripts/ensure-tts (make test does)")


def parse_wav(data: bytes) -> tuple[int, float, float]:
    """(sample rate, seconds, RMS of the samples) of a 16-bit mono WAV."""
    with wave.open(io.BytesIO(data)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
    samples = array.array("h", frames)
    rms = math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))
    return rate, len(samples) / rate, rms


def voices(client, token):
    return wait_until(lambda: (lambda r: r.get_json() if r.status_code == 200 else None)(
        client.get("/api/tts/voices", headers=bearer(token))), timeout=20, what="published voices")


def speak(client, token, text, **kw):
    r = client.post("/api/tts", headers=bearer(token), json={"text": text, **kw})
    assert r.status_code == 202, r.get_json()
    job = wait_for_state(client, r.get_json()["job_id"], token, timeout=60)
    assert job["state"] == "succeeded", job
    return r.get_json(), job


def test_voices_and_bad_input(client, users):
    u = users()
    listed = voices(client, u["access_token"])
    assert listed["engine"] == "espeak" and listed["voices"] and listed["default"]
    h = bearer(u["access_token"])
    cases = [({"text": "hi", "voice": "klingon"}, "unknown_voice"), ({"text": "x" * 5001}, "text_too_long"),
             ({"text": "hi", "format": "flac"}, "validation_error"), ({"text": "   "}, "validation_error"),
             ({"text": "hi", "speed": 2}, "validation_error")]
    for body, code in cases:
        r = client.post("/api/tts", headers=h, json=body)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == code, (body, r.get_json())


def test_tts_job_makes_real_audio_served_to_its_owner_only(client, users):
    u, other = users(), users()
    text = "Fractions have a numerator and a denominator. Add them over a common denominator."
    sent, job = speak(client, u["access_token"], text)
    result = job["result"]
    assert result["sentences"] == 2 and result["voice"] and result["format"] == "wav"
    events = parse_sse(client.get(sent["events_url"]).get_data(as_text=True))
    audio_events = [e for e in events if e["event"] == "audio"]
    assert [e["data"]["index"] for e in audio_events] == [0, 1] and events[-1]["event"] == "done"
    r = client.get(result["audio_url"])  # signed: what an <audio> element does
    assert r.status_code == 200 and r.headers["Content-Type"] == "audio/wav"
    assert int(r.headers["Content-Length"]) == len(r.data)
    rate, seconds, rms = parse_wav(r.data)
    assert rate > 8000 and rms > 300
    assert 2.0 < seconds < 15.0 and abs(seconds - result["duration"]) < 0.05
    r = client.get(result["audio_url"], headers={"Range": "bytes=0-43"})
    assert r.status_code == 206 and r.data[:4] == b"RIFF" and len(r.data) == 44
    audio_id = result["audio_id"]
    assert client.get(f"/api/audio/{audio_id}", headers=bearer(u["access_token"])).status_code == 200
    assert client.get(f"/api/audio/{audio_id}", headers=bearer(other["access_token"])).status_code == 404
    assert client.get(f"/api/audio/{audio_id}").status_code == 401
    first = audio_events[0]["data"]
    assert parse_wav(client.get(first["audio_url"]).data)[1] == pytest.approx(first["duration"], abs=0.05)


@pytest.mark.parametrize("fmt,ctype,magic", [("ogg", "audio/ogg", b"OggS"), ("mp3", "audio/mpeg", None)])
def test_other_formats(client, users, fmt, ctype, magic):
    u = users()
    _, job = speak(client, u["access_token"], "One short sentence.", format=fmt)
    r = client.get(job["result"]["audio_url"])
    assert r.status_code == 200 and r.headers["Content-Type"] == ctype and len(r.data) > 500
    if magic:
        assert r.data.startswith(magic)
    else:
        assert r.data[:3] == b"ID3" or r.data[0] == 0xFF


def test_a_chat_reply_speaks(client, users):
    u = users()
    r = client.post("/api/chat/send", headers=bearer(u["access_token"]),
                    json={"message": "Say something", "options": {"tts": True}})
    assert r.status_code == 202
    sent = r.get_json()
    wait_for_state(client, sent["job_id"], u["access_token"])
    events = parse_sse(client.get(sent["events_url"]).get_data(as_text=True))
    names = [e["event"] for e in events]
    assert "speech" in names and names.index("speech") < names.index("done")
    speech = events[names.index("speech")]["data"]
    job = wait_for_state(client, speech["job_id"], u["access_token"], timeout=60)
    assert job["state"] == "succeeded", job
    assert job["result"]["duration"] > 0.5
    speech_events = parse_sse(client.get(speech["events_url"]).get_data(as_text=True))
    assert any(e["event"] == "audio" for e in speech_events)
    history = client.get("/api/chat/history", headers=bearer(u["access_token"]),
                         query_string={"conversation_id": sent["conversation_id"]}).get_json()
    reply = history["items"][-1]
    assert reply["audio_url"] and client.get(reply["audio_url"]).status_code == 200


def test_the_default_piper_engine_end_to_end(make_stack, users):
    from worker.providers.speech.piper import default_python, default_voice_path
    if not (default_python().exists() and default_voice_path().exists()):
        pytest.skip("the Piper venv or voice is missing: run scripts/ensure-tts (make test does)")
    stack = make_stack("piper", TTS_ENGINE="local")
    stack.start_worker(queues="default,tts", concurrency=1)
    stack.start_web()
    u = users()
    h = bearer(u["access_token"])
    r = requests.post(f"{stack.url}/api/tts", headers=h, json={"text": "Welcome to today's lesson on gravity."})
    assert r.status_code == 202, r.text
    sent = r.json()
    job = wait_until(lambda: (lambda j: j if j["state"] in ("succeeded", "failed") else None)(
        requests.get(stack.url + sent["status_url"]).json()), timeout=90, what="the piper job")
    assert job["state"] == "succeeded", job
    # Read through its signed status_url, the job's audio_url is plain: the Bearer header fetches it.
    rate, seconds, rms = parse_wav(requests.get(stack.url + job["result"]["audio_url"], headers=h).content)
    assert rate == 22050 and rms > 300 and 1.0 < seconds < 6.0
