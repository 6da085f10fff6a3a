"""`/v1/avatars`: the avatar library (avatar.library.store) over HTTP.

The same `AvatarLibrary` as `avatar library` and the console, so an avatar made here is usable
with `avatar render --avatar` and the other way round, and a bad input is a 400 with the message
the CLI prints. The library is shared by every key of one service (it is the service's library).
The voice transcript is stored as given (`transcript`); this service does not run Whisper for it.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from avatar.api.edge import ApiError
from avatar.api.uploads import UploadBudget, public_message, save_upload
from avatar.core.errors import InputError

router = APIRouter(prefix="/v1/avatars", tags=["avatars"])


def _library(request: Request):
    from avatar.library.store import AvatarLibrary

    return AvatarLibrary(request.app.state.api.settings.library_root)


def _public(record) -> dict:
    settings = record.settings
    return {
        "slug": record.slug,
        "name": settings.name,
        "language": settings.language,
        "persona": settings.persona,
        "voice": record.voice_profile_path is not None,
        "knowledge": record.knowledge_path is not None,
        "face_index": settings.face_index,
        "created_at": settings.created_at,
        "warnings": list(record.warnings),
    }


def _not_found_or_invalid(exc: InputError) -> ApiError:
    status, code = (404, "not_found") if str(exc).startswith("no avatar named") else (400, "invalid_input")
    return ApiError(status, code, str(exc))


@router.get("", summary="Every avatar in the library")
def list_avatars(request: Request) -> dict:
    return {"avatars": [_public(record) for record in _library(request).list()]}


@router.get("/{name}", summary="One avatar, by name or slug")
def get_avatar(request: Request, name: str) -> dict:
    try:
        return _public(_library(request).get(name))
    except InputError as exc:
        raise _not_found_or_invalid(exc) from None


@router.post("", status_code=201, summary="Check a photo (and voice sample) and save them as an avatar")
def create_avatar(
    request: Request,
    photo: Annotated[UploadFile, File(description="portrait photo with one clear face")],
    name: str = Form(..., description="display name, any script, up to 64 characters"),
    voice: Annotated[UploadFile | None, File(description="3-30 s recording of the avatar's voice")] = None,
    transcript: str = Form("", description="what the voice sample says"),
    language: str | None = Form(None, description="en or zh"),
    persona: str = Form(""),
    knowledge: Annotated[
        UploadFile | None, File(description="FAQ / markdown / text for the answerer")
    ] = None,
    face: int | None = Form(None, ge=0, le=99),
):
    settings = request.app.state.api.settings
    budget = UploadBudget(settings.max_upload_bytes)
    folder = tempfile.mkdtemp(prefix="avatar-upload-", dir=settings.data_dir)
    from pathlib import Path

    folder = Path(folder)
    try:
        photo_path = save_upload(photo, folder, "photo", budget)
        voice_path = save_upload(voice, folder, "voice", budget) if voice is not None else None
        knowledge_path = (
            save_upload(knowledge, folder, "knowledge", budget) if knowledge is not None else None
        )
        record = _library(request).create(
            name,
            photo_path,
            voice_path,
            transcript=transcript,
            language=language or None,
            persona=persona,
            knowledge=knowledge_path,
            face_index=face,
        )
    except InputError as exc:
        raise ApiError(400, "invalid_input", public_message(str(exc), folder)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return JSONResponse(_public(record), status_code=201, headers={"Location": f"/v1/avatars/{record.slug}"})


@router.delete("/{name}", status_code=204, summary="Delete an avatar")
def delete_avatar(request: Request, name: str) -> Response:
    library = _library(request)
    try:
        library.delete(library.get(name).slug)
    except InputError as exc:
        raise _not_found_or_invalid(exc) from None
    return Response(status_code=204)
