"""A Python client for `avatar api` (httpx): what the tests use, and what users' programs call.

    from avatar.api.client import AvatarClient
    with AvatarClient("http://127.0.0.1:8000", api_key="...") as api:
        video = api.create_video(photo="me.jpg", text="Hello!")
        api.wait_video(video["id"])
        api.download_video(video["id"], "hello.mp4")

Every non-2xx answer raises `ApiError` with the service's code and one-line message.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

TERMINAL = ("succeeded", "failed", "canceled")


class ApiError(Exception):
    """The service said no: `status` (HTTP), `code` and `message` from its JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class AvatarClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}".encode()} if api_key else {}  # UTF-8 keys too
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def __enter__(self) -> AvatarClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ----------------------------------------------------------------------------------

    def _check(self, response):
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ApiError(response.status_code, error["code"], error["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(response.status_code, "http_error", response.text[:300]) from None
        return response

    def _json(self, method: str, path: str, **kwargs) -> dict:
        return self._check(self._http.request(method, path, **kwargs)).json()

    # -- videos ------------------------------------------------------------------------------------

    def create_video(
        self,
        *,
        photo: str | Path | None = None,
        avatar: str | None = None,
        text: str | None = None,
        audio: str | Path | None = None,
        voice: str | Path | None = None,
        emotion: str | None = None,
        language: str | None = None,
        size: int | None = None,
        tts: str | None = None,
        lipsync: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """Queue a video; returns `{"id", "status": "queued", ...}` (202)."""
        fields = {"avatar": avatar, "text": text, "emotion": emotion, "language": language, "size": size}
        fields.update(tts=tts, lipsync=lipsync, webhook_url=webhook_url)
        data = {k: str(v) for k, v in fields.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        with contextlib.ExitStack() as stack:
            files = {
                name: (Path(path).name, stack.enter_context(open(path, "rb")))
                for name, path in (("photo", photo), ("audio", audio), ("voice", voice))
                if path is not None
            }
            return self._json("POST", "/v1/videos", data=data, files=files or None, headers=headers)

    def get_video(self, video_id: str) -> dict:
        return self._json("GET", f"/v1/videos/{video_id}")

    def wait_video(self, video_id: str, timeout_s: float = 600.0, poll_s: float = 0.5) -> dict:
        """Poll until the video ends (succeeded, failed or canceled); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            video = self.get_video(video_id)
            if video["status"] in TERMINAL:
                return video
            if time.monotonic() > deadline:
                raise TimeoutError(f"video {video_id} still {video['status']} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def download_video(self, video_id: str, path: str | Path) -> Path:
        """Stream the MP4 to `path` (written beside it first, renamed when complete)."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.part")
        with self._http.stream("GET", f"/v1/videos/{video_id}/content") as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            with open(partial, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        partial.replace(path)
        return path

    def cancel_video(self, video_id: str) -> dict:
        return self._json("DELETE", f"/v1/videos/{video_id}")

    def video_events(self, video_id: str) -> Iterator[dict]:
        """Server-sent progress events, each a video status; ends after the final one."""
        with self._http.stream("GET", f"/v1/videos/{video_id}/events", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:].strip())

    # -- avatars -----------------------------------------------------------------------------------

    def list_avatars(self) -> list[dict]:
        return self._json("GET", "/v1/avatars")["avatars"]

    def create_avatar(
        self,
        name: str,
        photo: str | Path,
        voice: str | Path | None = None,
        *,
        transcript: str = "",
        language: str | None = None,
        persona: str = "",
        knowledge: str | Path | None = None,
    ) -> dict:
        data = {"name": name, "transcript": transcript, "persona": persona}
        if language:
            data["language"] = language
        with contextlib.ExitStack() as stack:
            files = {
                key: (Path(path).name, stack.enter_context(open(path, "rb")))
                for key, path in (("photo", photo), ("voice", voice), ("knowledge", knowledge))
                if path is not None
            }
            return self._json("POST", "/v1/avatars", data=data, files=files)

    def delete_avatar(self, name: str) -> None:
        self._check(self._http.delete(f"/v1/avatars/{name}"))

    # -- live sessions -----------------------------------------------------------------------------

    def create_session(self, sdp: str) -> dict:
        """Send a WebRTC offer; the answer `{"sdp", "type", "session_id", "worker"}`."""
        return self._json("POST", "/v1/sessions", json={"sdp": sdp, "type": "offer"})

    def get_session(self, session_id: str) -> dict:
        return self._json("GET", f"/v1/sessions/{session_id}")

    def health(self) -> dict:
        return self._json("GET", "/health")
