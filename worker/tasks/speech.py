"""The tts queue: text to speech, sentence by sentence, stored through the blob storage.

- `tts.synthesize`: a text from POST /api/tts.
- `tts.speak_reply`: a chat reply, followed while it streams: each finished sentence is
  spoken as soon as it exists, so an avatar can start talking before the reply ends.
Each sentence's clip is announced by an `audio` event; the whole text's clip is the result
(and, for a reply, goes on the message).
"""
from __future__ import annotations

import io
import time

from sqlalchemy import update

from shared.database import db, write_tx
from shared.jobs import TERMINAL_EVENTS, Event, stream
from shared.models import AudioClip, Message
from shared.payloads import SpeechPayload, TTSPayload
from shared.redis_client import get_blocking_redis
from shared.signing import audio_url, job_binding
from shared.storage import get_storage
from worker.providers.speech import SpeechError, SpeechUnavailable, get_engine
from worker.providers.speech.audio import Audio, concat, duration, to_format
from worker.providers.speech.text import clean_for_speech, split_sentences
from worker.tasks.base import job_task
from worker.tasks.context import JobContext, JobFailed, Transient

FOLLOW_LIMIT = 600  # seconds a reply is followed at most


class _Speaker:
    """Speaks sentences for one job, storing and announcing each clip."""

    def __init__(self, ctx: JobContext, voice: str | None, fmt: str, message_id: str | None = None):
        self.ctx, self.voice, self.fmt, self.message_id = ctx, voice, fmt, message_id
        self.engine = get_engine()
        self.parts: list[Audio] = []
        self.binding = job_binding(ctx.job_id)  # the sign-in session that made the job signs its URLs

    def _store(self, audio: Audio, sentence: int | None) -> AudioClip:
        data, content_type = to_format(audio, self.fmt)
        clip = AudioClip(user_id=self.ctx.user_id, job_id=self.ctx.job_id, message_id=self.message_id,
                         sentence=sentence, voice=self.voice or self.engine.name, format=self.fmt,
                         content_type=content_type, size=len(data), duration=round(duration(audio), 3),
                         storage_key="")
        clip.storage_key = f"audio/{self.ctx.user_id}/{self.ctx.job_id}-{sentence if sentence is not None else 'all'}"
        get_storage().put(clip.storage_key, io.BytesIO(data))
        with write_tx():
            db.session.add(clip)
        return clip

    def say(self, text: str) -> None:
        self.ctx.check_cancelled()
        try:
            audio = self.engine.synthesize(text, self.voice)
        except SpeechUnavailable as exc:
            raise Transient(str(exc), code="tts_unavailable") from exc
        except SpeechError as exc:
            raise JobFailed("tts_error", str(exc)) from exc
        index = len(self.parts)
        self.parts.append(audio)
        clip = self._store(audio, index)
        self.ctx.emit("audio", {"index": index, "text": text, "audio_id": clip.id, "duration": clip.duration,
                                "audio_url": audio_url(self.binding, clip.id)})

    def finish(self) -> dict:
        if not self.parts:
            raise JobFailed("no_text", "there was nothing to speak")
        whole = self._store(concat(self.parts), None)
        return {"audio_id": whole.id, "audio_url": audio_url(self.binding, whole.id), "duration": whole.duration,
                "voice": whole.voice, "format": whole.format, "sentences": len(self.parts)}


@job_task("tts.synthesize", max_retries=3)
def synthesize(ctx: JobContext) -> dict:
    """Speak the text sentence by sentence, storing each clip and the whole; return the whole clip."""
    p: TTSPayload = ctx.payload
    speaker = _Speaker(ctx, p.voice, p.format)
    sentences = split_sentences(clean_for_speech(p.text))
    for i, sentence in enumerate(sentences):
        speaker.say(sentence)
        ctx.emit("progress", {"progress": round((i + 1) / len(sentences), 3), "sentences": len(sentences)})
    return speaker.finish()


@job_task("tts.speak_reply", max_retries=3)
def speak_reply(ctx: JobContext) -> dict:
    """Follow the chat job's token stream and speak each sentence once it is complete."""
    p: SpeechPayload = ctx.payload
    speaker = _Speaker(ctx, p.voice, p.format, message_id=p.message_id)
    r = get_blocking_redis()
    text, spoken, after, ended = "", 0, "0", None
    deadline = time.monotonic() + FOLLOW_LIMIT
    while ended is None and time.monotonic() < deadline:
        for _id, name, data in stream.read(r, p.chat_job_id, after, 2000):
            after = _id
            if name == Event.token.value:
                text += data.get("delta", "")
            elif name == Event.restarted.value:  # the reply starts over; so does what is spoken of it
                text, spoken, speaker.parts = "", 0, []
            elif name in TERMINAL_EVENTS:
                ended = name
        sentences = split_sentences(clean_for_speech(text))
        complete = sentences if ended else sentences[:-1]  # the last one may still be growing
        for sentence in complete[spoken:]:
            speaker.say(sentence)
        spoken = max(spoken, len(complete))
        ctx.check_cancelled()
    if ended is None:
        raise JobFailed("reply_timeout", "the reply did not finish in time")
    result = speaker.finish()
    with write_tx():
        message = db.session.get(Message, p.message_id)
        if message is not None:
            db.session.execute(update(Message).where(Message.id == message.id).values(
                meta={**(message.meta or {}), "audio_id": result["audio_id"]}))
    return result
