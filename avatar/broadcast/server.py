"""`avatar live`: the livestream host behind an HTTP API, with its outputs and a monitor.

One `BroadcastHost` per process. This module wires it to the world: ffmpeg outputs (RTMP push,
segmented recording), the operator page with a WebRTC monitor of exactly what goes out, the
viewer comment page, the control API and an SSE event stream. docs/livestream_api.md is the
contract. Everything the process starts (host tasks, ffmpeg children, monitor peers, event
streams) is stopped on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from avatar.broadcast.events import EventHub, EventStreamsFull
from avatar.broadcast.items import LineFull
from avatar.broadcast.monitor import MonitorPeers
from avatar.core.errors import AvatarError, InputError
from avatar.engines.live_set import LiveConfig, LiveEngines
from avatar.playout.http_edge import client_fault_logging, is_authorized, protect, unsafe_text

log = logging.getLogger("avatar.broadcast")
STATIC_DIR = Path(__file__).with_name("static")
MAX_BODY_BYTES = 100_000
MAX_SAY_CHARS = 2000
PUBLIC_PATHS = ("/health", "/comment", "/api/comments")  # the rest needs --token when it is set
_REFUSAL_STATUS = {
    "empty": 400,
    "too_long": 400,
    "duplicate": 409,
    "blocked": 422,
    "moderated": 422,
    "rate_limited": 429,
    "queue_full": 503,
}


@dataclass(frozen=True)
class BroadcastConfig:
    live: LiveConfig
    script: tuple = ()  # avatar.broadcast.show_script.ScriptItem, read once by the caller
    loop_script: bool = True
    rtmp_urls: tuple[str, ...] = ()
    record_dir: Path | None = None
    segment_s: float = 300.0
    keyframe_interval_s: float = 2.0
    video_kbps: int = 1500
    blocklist_path: Path | None = None
    comment_interval_s: float = 10.0
    comments_per_minute: int = 30
    read_comments_aloud: bool = True
    library_root: Path | None = None
    token: str | None = None
    heap_trim_interval_s: float = 30.0  # give freed heap back to the system (avatar.core.heap_trim); 0 = off


class BroadcastServer:
    """The aiohttp application around one broadcast."""

    def __init__(self, config: BroadcastConfig, engines: LiveEngines) -> None:
        self.config = config
        self.engines = engines
        self.host = None
        self.outputs: list = []
        self.events_hub = EventHub()
        self.monitors = MonitorPeers(on_event=self._publish)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._switching = asyncio.Lock()
        self._heap_trim: asyncio.Task | None = None

    # --- set-up -----------------------------------------------------------------------------------
    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=MAX_BODY_BYTES, handler_args=client_fault_logging())
        app.router.add_get("/", self._page("broadcast.html"))
        app.router.add_get("/comment", self._page("comment.html"))
        app.router.add_get("/health", self.health)
        app.router.add_post("/offer", self.offer)
        app.router.add_post("/api/comments", self.comments)
        app.router.add_post("/api/say", self.say)
        app.router.add_post("/api/control/{action}", self.control)
        app.router.add_get("/api/status", self.status)
        app.router.add_get("/api/events", self.events)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        # With --token every route needs it (avatar.playout.http_edge) except the viewers' side (the
        # comment page and its API: rate-limited and moderated) and a /health that says only
        # that the server is alive.
        protect(app, self.config.token, public=PUBLIC_PATHS, pages=("/",))
        return app

    async def _on_startup(self, app) -> None:
        await self.start()

    async def _on_shutdown(self, app) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the host from the loaded engines, start the outputs, go on air."""
        from avatar.broadcast.comments import CommentIntake, load_blocklist
        from avatar.broadcast.host import BroadcastHost
        from avatar.core.clock import SystemClock
        from lipsync.streaming_lipsync import StreamingLipSync

        config, live = self.config, self.config.live
        self._loop = asyncio.get_running_loop()
        clock = SystemClock()
        intake = CommentIntake(
            clock,
            per_user_interval_s=config.comment_interval_s,
            global_per_minute=config.comments_per_minute,
            blocklist=load_blocklist(config.blocklist_path) if config.blocklist_path else (),
        )
        lipsync = StreamingLipSync(self.engines.renderer)
        self.host = BroadcastHost(
            tts=self.engines.voice(self.engines.voice_profile, live.language, self.engines.cloned_voice),
            lipsync=lipsync,
            llm=self.engines.llm,
            clock=clock,
            intake=intake,
            on_event=self._publish,
            system_prompt=live.system_prompt,
            read_comments_aloud=config.read_comments_aloud,
            avatar_name=live.avatar_name,
            stage_timeouts=live.stage_timeouts,
        )
        if config.script:
            self.host.set_script(
                [(item.text, item.segments) for item in config.script], loop=config.loop_script
            )
        self.outputs = self._make_outputs(*self.engines.renderer.assets.size_wh)
        for output in self.outputs:
            output.start()
            self.host.add_output(output)
        await self.host.start()
        if self.config.heap_trim_interval_s > 0:
            from avatar.core.heap_trim import trim_heap_forever

            self._heap_trim = asyncio.create_task(trim_heap_forever(self.config.heap_trim_interval_s))
        log.info(
            "on air: %s, outputs: %s",
            live.avatar_name,
            [o.status()["target"] for o in self.outputs] or "none",
        )

    def _make_outputs(self, width: int, height: int) -> list:
        config = self.config
        if not config.rtmp_urls and config.record_dir is None:
            return []  # monitor only (rehearsals, tests)
        from avatar.broadcast.outputs import FfmpegOutput

        common = dict(
            width=width,
            height=height,
            keyframe_interval_s=config.keyframe_interval_s,
            video_kbps=config.video_kbps,
            on_event=self._publish_from_thread,
        )
        outputs = [
            FfmpegOutput(name="rtmp" if i == 0 else f"rtmp{i + 1}", kind="rtmp", target=url, **common)
            for i, url in enumerate(config.rtmp_urls)
        ]
        if config.record_dir is not None:
            outputs.append(
                FfmpegOutput(
                    name="record",
                    kind="record",
                    target=str(config.record_dir),
                    segment_s=config.segment_s,
                    **common,
                )
            )
        return outputs

    async def stop(self) -> None:
        if self._heap_trim is not None:
            self._heap_trim.cancel()
            await asyncio.gather(self._heap_trim, return_exceptions=True)
            self._heap_trim = None
        await self.monitors.close()
        if self.host is not None:
            await self.host.close()
        outputs, self.outputs = self.outputs, []
        await asyncio.gather(*(asyncio.to_thread(output.close) for output in outputs))
        self.events_hub.close()  # ends each event stream

    # --- events -----------------------------------------------------------------------------------
    def _publish(self, event: dict) -> None:
        self.events_hub.publish(event)

    def _publish_from_thread(self, event: dict) -> None:
        """Output threads report connection changes here; the loop publishes them."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            event = dict(event)
            if self.host is not None:
                event.setdefault("at_s", round(self.host.pump.stream_time_s, 3))
            loop.call_soon_threadsafe(self._publish, event)

    # --- HTTP helpers -----------------------------------------------------------------------------
    def _page(self, name: str):
        from aiohttp import web

        async def handler(request):
            return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-store"})

        return handler

    def _authorized(self, request) -> bool:
        return is_authorized(request, self.config.token)

    @staticmethod
    def _error(status: int, message: str, **extra):
        from aiohttp import web

        return web.json_response({"error": message, "message": message, **extra}, status=status)

    @staticmethod
    async def _json_body(request) -> dict:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError("the body is not JSON", 'send e.g. {"text": "..."}') from exc
        except RecursionError:  # `[[[[...` nested deeper than the parser's stack, within 100 kB
            raise InputError("the body's JSON is nested too deeply", 'send e.g. {"text": "..."}') from None
        if not isinstance(body, dict):
            raise InputError("the body must be a JSON object", 'send e.g. {"text": "..."}')
        reason = unsafe_text(body)
        if reason is not None:  # it would break the event stream, paths and the voice further in
            raise InputError(f"the body's text cannot be used: {reason}", "send plain UTF-8 text")
        return body

    # --- endpoints --------------------------------------------------------------------------------
    async def health(self, request):
        """Liveness for anyone; the avatar, state, outputs and engine only for the token's holder."""
        from aiohttp import web

        if not self._authorized(request):
            return web.json_response({"ok": True, "token_required": True})
        status = self.host.status() if self.host is not None else {"state": "starting", "outputs": []}
        return web.json_response(
            {
                "ok": True,
                "avatar": self.host.avatar_name if self.host else self.config.live.avatar_name,
                "state": status["state"],
                "outputs": status["outputs"],
                "reply_engine": self.engines.reply_engine,
                "token_required": bool(self.config.token),
            }
        )

    async def status(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._error(401, "missing or wrong token")
        return web.json_response(
            {
                **self.host.status(),
                "monitors_open": self.monitors.open_count,
                "event_streams": {
                    "open": self.events_hub.reader_count,
                    "dropped": self.events_hub.dropped_readers,
                },
            }
        )

    async def comments(self, request):
        from aiohttp import web

        try:
            body = await self._json_body(request)
        except InputError as exc:
            return self._error(400, str(exc), accepted=False, reason="bad_request")
        user, text = body.get("user", ""), body.get("text", "")
        if not isinstance(user, str) or not isinstance(text, str):
            return self._error(400, '"user" and "text" must be strings', accepted=False, reason="bad_request")
        verdict = self.host.submit_comment(user, text)
        if not verdict.accepted:
            return web.json_response(
                {"accepted": False, "reason": verdict.reason, "message": verdict.message},
                status=_REFUSAL_STATUS.get(verdict.reason, 400),
            )
        comment_id = verdict.comment.comment_id
        return web.json_response(
            {"accepted": True, "comment_id": comment_id, "position": self.host.comment_position(comment_id)},
            status=202,
        )

    async def say(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._error(401, "missing or wrong token")
        try:
            body = await self._json_body(request)
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                raise InputError('"text" is missing or empty', "give the words the avatar should say")
            if len(text) > MAX_SAY_CHARS:
                raise InputError(
                    f"the text has {len(text)} characters, more than {MAX_SAY_CHARS}", "say it in parts"
                )
            emotion, now = body.get("emotion"), body.get("now")
            now = False if now is None else now
            if emotion is not None and not isinstance(emotion, str):
                raise InputError('"emotion" must be a string', 'e.g. "happy", or leave it out')
            if not isinstance(now, bool):  # "false" is a non-empty string: it would interrupt
                raise InputError(f'"now" must be true or false, got {now!r:.40}', "send a JSON boolean")
            item = await self.host.say(text, emotion=emotion or None, now=now)
        except AvatarError as exc:
            return self._error(400, str(exc))
        except LineFull as exc:
            return self._error(503, str(exc))
        return web.json_response({"item_id": item.item_id}, status=202)

    async def control(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._error(401, "missing or wrong token")
        action, host = request.match_info["action"], self.host
        if action == "pause":
            host.pause()
            return web.json_response({"ok": True, "state": host.status()["state"]})
        if action == "resume":
            host.resume()
            return web.json_response({"ok": True, "state": host.status()["state"]})
        if action == "skip":
            return web.json_response({"ok": True, "skipped": await host.skip()})
        if action == "interrupt":
            return web.json_response({"ok": True, "interrupted": await host.interrupt()})
        if action in ("emotion", "avatar"):
            try:
                body = await self._json_body(request)
            except InputError as exc:
                return self._error(400, str(exc))
            if action == "emotion":
                try:
                    host.set_emotion(str(body.get("emotion", "")))
                except ValueError as exc:
                    return self._error(400, str(exc))
                return web.json_response({"ok": True, "emotion": host.emotion})
            return await self._switch_avatar(str(body.get("avatar", "")).strip())
        return self._error(
            404, f"unknown control '{action}'; use pause, resume, skip, interrupt, emotion, avatar"
        )

    async def _switch_avatar(self, name: str):
        from aiohttp import web

        from avatar.library.store import AvatarLibrary

        if not name:
            return self._error(400, '"avatar" is missing: give a library avatar\'s name')
        try:
            avatar = await asyncio.to_thread(AvatarLibrary(self.config.library_root).inputs, name)
        except InputError as exc:
            return self._error(404, str(exc))
        if self._switching.locked():
            return self._error(409, "an avatar change is already in progress")
        async with self._switching:
            try:
                lipsync, voice = await asyncio.to_thread(self._load_avatar, avatar)
            except AvatarError as exc:
                return self._error(422, str(exc))
            await self.host.switch_avatar(lipsync, voice, avatar.label)
        return web.json_response({"ok": True, "avatar": avatar.label})

    def _load_avatar(self, avatar):
        """Blocking: a library avatar's face and voice (AvatarInputs), at the stream's size, from the
        process's engine set (switching back to an avatar reuses its prepared face and voice)."""
        from lipsync.streaming_lipsync import StreamingLipSync

        live, engines = self.config.live, self.engines.engines
        renderer = engines.renderer(avatar.photo_path, live.size_px, avatar.face_index)
        profile, cloned = None, None
        if live.tts_choice.tts != "embedded":
            if live.tts_choice.clones_voice and avatar.voice_sample_path is None:
                raise InputError(
                    f"{avatar.label} has no voice sample to clone",
                    "add one in the library, or run the stream with the embedded voice",
                )
            cloned = self.engines.clone_voice(avatar.voice_sample_path, avatar.voice_transcript)
        elif avatar.voice_profile_path is not None:
            profile = engines.voice_profile(avatar.voice_profile_path)
        voice = self.engines.voice(profile, live.language or avatar.language, cloned)
        return StreamingLipSync(renderer), voice

    async def events(self, request):
        if not self._authorized(request):
            return self._error(401, "missing or wrong token")
        try:
            return await self.events_hub.stream(request, lambda: {"type": "status", **self.host.status()})
        except EventStreamsFull as exc:
            return self._error(503, str(exc))

    async def offer(self, request):
        """The operator page's monitor: 400 says what is wrong with a bad offer, 503 when all
        monitor slots are taken (a slot is taken only by an offer that was answered)."""
        from aiohttp import web

        from avatar.broadcast.monitor import MonitorsFull
        from avatar.playout.offers import OfferError, read_offer

        if not self._authorized(request):
            return self._error(401, "missing or wrong token")
        try:
            sdp = await read_offer(request)
            answer = await self.monitors.answer(sdp, self.host.pump)
        except OfferError as exc:
            return self._error(400, str(exc))
        except MonitorsFull as exc:
            return self._error(503, str(exc))
        return web.json_response(answer)


def load_engines(config: BroadcastConfig) -> LiveEngines:
    """Blocking: the avatar's face, voice and answerer (no microphone side: a livestream only speaks)."""
    return LiveEngines(config.live).load(listening=False)
