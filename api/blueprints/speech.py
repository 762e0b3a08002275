"""/api/tts and /api/audio: text to speech as jobs, and the audio they make."""
from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from api.errors import APIError
from api.schemas.common import ERRORS, ErrorResponse
from api.schemas.speech import AudioPath, TTSBody, TTSResponse, VoicesResponse
from api.security import authenticate
from api.services import speech
from shared.signing import audio_resource
from shared.storage import get_storage

bp = APIBlueprint("speech", __name__, url_prefix="/api", abp_tags=[Tag(name="speech")],
                  abp_security=[{"bearer": []}], abp_responses=ERRORS)


@bp.post("/tts", responses={202: TTSResponse, 413: ErrorResponse})
def tts(body: TTSBody):
    """Turn text into speech. The job's stream has an `audio` event per sentence; its result holds
    audio_url, duration and voice."""
    user = authenticate()
    return speech.request_speech(user, body.text, body.voice, body.format), 202


@bp.get("/tts/voices", responses={200: VoicesResponse})
def voices():
    """The voices the configured engine offers."""
    authenticate()
    return speech.voices()


@bp.get("/audio/<id:audio_id>", security=[{"bearer": []}, {"signed_url": []}],
        responses={200: {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                     for t in ("audio/wav", "audio/ogg", "audio/mpeg")}},
                   206: {"description": "a byte range"}})
def audio(path: AudioPath):
    """An audio clip, to its owner only (Bearer header or the signed audio_url), with Range support."""
    from flask import send_file
    user = authenticate(audio_resource(path.audio_id))
    clip = speech.get_clip(user, path.audio_id)
    local = get_storage().local_path(clip.storage_key)
    if local is None or not local.is_file():
        raise APIError(404, "not_found", "the audio's content is gone")
    resp = send_file(local, mimetype=clip.content_type, conditional=True, etag=clip.id, max_age=0)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
