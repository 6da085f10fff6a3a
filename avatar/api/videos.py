"""`/v1/videos`: render jobs. Create (202, queued), status, the MP4, cancel, and an SSE stream.

Everything a job needs is checked here, before it is queued, with the CLI's own checks
(`avatar.render.job.validate_request`, the photo decoder, the audio prober), so a bad upload is a
400 carrying the same one-line message `avatar render` prints, not a job that fails later.
Jobs belong to the key that created them; another key gets 404 for them.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from avatar.api.edge import ApiError
from avatar.api.uploads import UploadBudget, public_message, save_upload
from avatar.core.errors import InputError

router = APIRouter(prefix="/v1/videos", tags=["videos"])
EVENT_POLL_S = 0.25
EVENT_KEEPALIVE_S = 15.0
MAX_IDEMPOTENCY_KEY_CHARS = 200
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]+$")


def _state(request: Request):
    state = request.app.state.api
    if state.service is None:
        raise ApiError(
            503,
            "no_render_jobs",
            "this server renders no videos (it is `avatar serve --ray`): use `avatar api`",
        )
    return state


def _own_record(request: Request, video_id: str):
    record = _state(request).service.store.find(video_id)
    if record is None or record.owner != request.state.owner:
        raise ApiError(404, "not_found", f"no video with id {video_id!r}")
    return record


@router.post("", status_code=202, summary="Queue a talking-head video")
def create_video(
    request: Request,
    photo: Annotated[UploadFile | None, File(description="portrait photo (JPEG/PNG/WebP)")] = None,
    avatar: str | None = Form(None, description="a library avatar's name or slug, instead of a photo"),
    text: str | None = Form(None, description="what to say; inline tags like [happy], [pause 0.5s]"),
    audio: Annotated[UploadFile | None, File(description="a recording to lip-sync, instead of text")] = None,
    voice: Annotated[UploadFile | None, File(description="3-30 s voice sample to match (text only)")] = None,
    emotion: str = Form("neutral"),
    language: str | None = Form(None, description="en or zh; default: detected"),
    size: int | None = Form(None, ge=64, le=4096, description="longest side of the video in pixels"),
    face: int | None = Form(None, ge=0, le=99),
    tts: str | None = Form(None, description="speech engine name (see `avatar models`)"),
    lipsync: str | None = Form(None, description="lip-sync engine name"),
    webhook_url: str | None = Form(None, description="POSTed the final state as JSON"),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
):
    state = _state(request)
    service, owner = state.service, request.state.owner
    if idempotency_key is not None:
        _check_idempotency_key(idempotency_key)
        existing = service.store.find_by_key(owner, idempotency_key)
        if existing is not None:
            return _accepted(existing, replayed=True)
    active = service.store.count_active(owner)
    if active >= state.settings.max_queued_jobs:
        raise ApiError(
            429,
            "too_many_jobs",
            f"{active} videos are queued or running for this key (limit {state.settings.max_queued_jobs}); "
            "wait for some to finish",
        )
    if webhook_url is not None and not re.match(r"^https?://[^\s]+$", webhook_url):
        raise ApiError(400, "invalid_input", "webhook_url must be an http:// or https:// URL")
    job_id = "vid_" + secrets.token_hex(8)
    upload_dir = state.settings.data_dir / "uploads" / job_id
    try:
        spec = _job_spec(
            state,
            job_id,
            upload_dir,
            photo,
            avatar,
            text,
            audio,
            voice,
            emotion,
            language,
            size,
            face,
            tts,
            lipsync,
        )
        record, created = service.submit(
            spec, owner, idempotency_key=idempotency_key, webhook=webhook_url, upload_dir=upload_dir
        )
    except InputError as exc:
        shutil.rmtree(upload_dir, ignore_errors=True)
        raise ApiError(400, "invalid_input", public_message(str(exc), upload_dir)) from None
    except BaseException:
        shutil.rmtree(upload_dir, ignore_errors=True)
        raise
    if not created:  # the same key raced another request: that one's job stands
        shutil.rmtree(upload_dir, ignore_errors=True)
    return _accepted(record, replayed=not created)


def _check_idempotency_key(key: str) -> None:
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not _IDEMPOTENCY_KEY.match(key):
        raise ApiError(
            400,
            "invalid_input",
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters",
        )


def _accepted(record, replayed: bool) -> JSONResponse:
    headers = {"Location": f"/v1/videos/{record.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(record.public(), status_code=202, headers=headers)


def _job_spec(
    state, job_id, upload_dir, photo, avatar, text, audio, voice, emotion, language, size, face, tts, lipsync
):
    """Uploads saved, the avatar's inputs looked up, everything checked; InputError otherwise."""
    from avatar.engines.choice import CLONING_ENGINES, EngineChoice
    from avatar.jobs.spec import JobSpec
    from avatar.playout.http_edge import unsafe_text
    from avatar.render.job import validate_request
    from avatar.render.request import RenderRequest

    for field_name, value in (
        ("text", text),
        ("avatar", avatar),
        ("language", language),
        ("emotion", emotion),
    ):
        reason = unsafe_text(value)
        if reason is not None:
            raise InputError(f"{field_name} is refused: {reason}")
    text = text if text is None or text.strip() else None if audio is not None else text
    if (photo is None) == (avatar is None or not avatar.strip()):
        raise InputError("give either a photo file or an avatar name (exactly one)")
    if text is None and audio is None:
        raise InputError("give either text or an audio file (exactly one)")
    if text is not None and audio is not None:
        raise InputError("give text or an audio file, not both")
    choice = EngineChoice(
        tts=tts or state.settings.default_tts,
        lipsync=lipsync or state.settings.default_lipsync,
        device=state.settings.device,
    )
    choice.validate()
    budget = UploadBudget(state.settings.max_upload_bytes)
    voice_path = save_upload(voice, upload_dir, "voice", budget) if voice is not None else None
    audio_path = save_upload(audio, upload_dir, "audio", budget) if audio is not None else None
    voice_text = None
    if photo is not None:
        photo_path = save_upload(photo, upload_dir, "photo", budget)
        from lipsync.avatar_assets import read_photo

        read_photo(photo_path)  # decodes: a file that is not a picture is a 400 now, not a failed job
    else:
        from avatar.library.store import AvatarLibrary

        inputs = AvatarLibrary(state.settings.library_root).inputs(avatar)
        photo_path = inputs.photo_path
        if voice_path is None and audio_path is None:
            voice_path, voice_text = inputs.voice_reference(cloning=choice.tts in CLONING_ENGINES)
        language = language or inputs.language
        face = face if face is not None else inputs.face_index
    if audio_path is not None:
        from avatar.core.audio_io import probe_audio

        probe_audio(audio_path)
    if voice_text:
        from dataclasses import replace

        choice = replace(choice, voice_text=voice_text)
    request = RenderRequest(
        photo_path=photo_path,
        output_path=state.service.output_path(job_id),
        text=text,
        audio_path=audio_path,
        voice_sample_path=voice_path,
        emotion=(emotion or "neutral").strip().lower(),
        language=language or None,
        size_px=size,
        face_index=face,
    )
    validate_request(request)
    return JobSpec(job_id, request, choice)


@router.get("/{video_id}", summary="A video's status and progress")
def get_video(request: Request, video_id: str) -> dict:
    return _own_record(request, video_id).public()


@router.get("/{video_id}/content", summary="The finished MP4", response_class=FileResponse)
def get_content(request: Request, video_id: str):
    record = _own_record(request, video_id)
    if record.status != "succeeded":
        raise ApiError(
            409, "not_ready", f"video {video_id} is {record.status}; the MP4 exists once it has succeeded"
        )
    path: Path = _state(request).service.output_path(video_id)
    if not path.is_file():
        raise ApiError(410, "gone", f"the MP4 of video {video_id} is no longer stored")
    return FileResponse(path, media_type="video/mp4", filename=f"{video_id}.mp4")


@router.delete("/{video_id}", summary="Cancel a queued or running video")
def cancel_video(request: Request, video_id: str) -> dict:
    record = _own_record(request, video_id)
    if record.status in ("succeeded", "failed", "canceled"):
        raise ApiError(409, "already_finished", f"video {video_id} has already {record.status}")
    record = _state(request).service.cancel(video_id)
    return {**record.public(), "cancel_requested": True}


@router.get("/{video_id}/events", summary="Progress as server-sent events (ends with the final state)")
async def video_events(request: Request, video_id: str):
    _own_record(request, video_id)
    store = _state(request).service.store

    async def events():
        last, quiet_s = None, 0.0
        while True:
            record = await asyncio.to_thread(store.get, video_id)
            body = record.public()
            key = (body["status"], body["progress"])
            if key != last:
                last, quiet_s = key, 0.0
                yield f"event: {body['status']}\ndata: {json.dumps(body)}\n\n"
            elif quiet_s >= EVENT_KEEPALIVE_S:
                quiet_s = 0.0
                yield ": keep-alive\n\n"
            if record.status in ("succeeded", "failed", "canceled") or await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_POLL_S)
            quiet_s += EVENT_POLL_S

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
