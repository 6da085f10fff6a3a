"""`avatar serve`: WebRTC conversations with one avatar, many sessions in one process.

Signalling follows the aiortc examples (`POST /offer` with `{"sdp", "type"}`, answered in the same
shape once ICE gathering is complete); docs/live_protocol.md is the contract with the page and the
probe client. Engines are loaded once; each connection gets its own session, queue, playout,
lip-sync state and tracks, and its own tasks, all ended when the peer goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatar.engines.live_set import LiveEngines
from avatar.playout.http_edge import client_fault_logging, is_authorized, protect, unsafe_text
from avatar.playout.offers import close_quietly

log = logging.getLogger("avatar.live")
STATIC_DIR = Path(__file__).with_name("static")
MAX_OFFER_BYTES = 100_000
MAX_SAY_CHARS = 2000  # a "say" message on the data channel
# The VAD calls speech over after this much silence and the session starts preparing the reply
# then (recognition, LLM, TTS, first frames), held until the turn really ends: when the turn
# model calls it complete (asked after `LiveConfig.turn_check_silence_ms`, 200 ms), else after the
# silence rule's 500 ms (or the model's fallback). A pause that long inside a sentence only costs
# a discarded guess (and, with a paid LLM, its tokens).
SPECULATE_AFTER_SILENCE_MS = 120.0


class ServerFull(Exception):
    """Every session slot is taken (HTTP 503)."""


@dataclass
class LiveSession:
    """Everything one connection owns."""

    session_id: str
    pc: object
    session: object
    tasks: set[asyncio.Task] = field(default_factory=set)
    channel: object | None = None
    closed: bool = False


class LiveServer:
    """The aiohttp application and the registry of live sessions."""

    def __init__(
        self,
        engines: LiveEngines,
        token: str | None = None,
        ice_servers: tuple[str, ...] = (),
        max_sessions: int = 8,
        connect_timeout_s: float | None = None,
    ) -> None:
        from avatar.playout.offers import CONNECT_TIMEOUT_S

        self.engines = engines
        self.connect_timeout_s = CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s
        self.token = token
        self.ice_servers = ice_servers
        self.max_sessions = max_sessions
        self.sessions: dict[str, LiveSession] = {}

    # --- HTTP -------------------------------------------------------------------------------------
    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=MAX_OFFER_BYTES, handler_args=client_fault_logging())
        app.router.add_get("/", self.page)
        app.router.add_get("/health", self.health)
        app.router.add_post("/offer", self.offer)
        app.router.add_post("/sessions/{session_id}/interrupt", self.interrupt)
        app.on_shutdown.append(self._on_shutdown)
        # With --token every route needs it (avatar.playout.http_edge); /health answers without it,
        # saying only that the server is alive.
        protect(app, self.token, public=("/health",), pages=("/",))
        return app

    def _authorized(self, request) -> bool:
        return is_authorized(request, self.token)

    @staticmethod
    def _error(status: int, message: str):
        from aiohttp import web

        return web.json_response({"error": message}, status=status)

    async def page(self, request):
        from aiohttp import web

        return web.FileResponse(STATIC_DIR / "index.html")

    async def health(self, request):
        """Liveness for anyone; the avatar, persona and engines only for the token's holder."""
        from aiohttp import web

        if not self._authorized(request):
            return web.json_response({"ok": True, "token_required": True})
        config = self.engines.config
        return web.json_response(
            {
                "ok": True,
                "sessions": len(self.sessions),
                "max_sessions": self.max_sessions,
                "avatar": config.avatar_name,
                "persona": config.persona_name,
                "ice_servers": list(self.ice_servers),
                "llm": config.llm,
                "reply_engine": self.engines.reply_engine,
                "turn_rule": self.engines.turn_rule,
                "token_required": bool(self.token),
            }
        )

    async def interrupt(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._error(401, "missing or wrong bearer token")
        live = self.sessions.get(request.match_info["session_id"])
        if live is None:
            return self._error(404, "no such session")
        interrupted = await live.session.interrupt("api")
        return web.json_response({"interrupted": interrupted})

    async def offer(self, request):
        """Answer a browser's offer with a new session; 400 says what is wrong with a bad offer, 503
        when full. The slot is taken only once the offer is read and checked, and given back on
        every failure, and by a peer that never connects (`CONNECT_TIMEOUT_S`)."""
        from aiohttp import web

        from avatar.playout.offers import OfferError, read_offer

        if not self._authorized(request):
            return self._error(401, "missing or wrong bearer token")
        if len(self.sessions) >= self.max_sessions:  # cheap early answer; _open_session re-checks
            return self._error(503, self._full_message())
        try:
            sdp = await read_offer(request)
            live, answer = await self._open_session(sdp)
        except OfferError as exc:
            return self._error(400, str(exc))
        except ServerFull:
            return self._error(503, self._full_message())
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session_id": live.session_id})

    def _full_message(self) -> str:
        return f"the server is full ({self.max_sessions} sessions); try again later"

    # --- sessions ---------------------------------------------------------------------------------
    async def _open_session(self, sdp: str):
        from avatar.core.clock import SystemClock
        from avatar.playout.av_output import AVOutputQueue, AVPlayout
        from avatar.playout.offers import answer_offer, close_unless_connected, peer_connection
        from avatar.playout.webrtc_tracks import paced_tracks
        from lipsync.streaming_lipsync import StreamingLipSync

        engines, config = self.engines, self.engines.config
        if len(self.sessions) >= self.max_sessions:  # checked with no await before the slot is taken
            raise ServerFull
        session_id = secrets.token_hex(6)
        pc = peer_connection(self.ice_servers)
        queue = AVOutputQueue()
        lipsync = StreamingLipSync(engines.renderer, seed=secrets.randbits(16))
        playout = AVPlayout(queue, lambda tick: lipsync.idle_frame())
        clock = SystemClock()
        live = LiveSession(session_id, pc, None)

        def send_event(event: dict) -> None:
            channel = live.channel
            if channel is not None and channel.readyState == "open":
                channel.send(json.dumps(event, ensure_ascii=False, default=str))

        live.session = self._conversation(lipsync, queue, playout, clock, send_event)
        self.sessions[session_id] = live
        log.info("session %s: offer received (%d live)", session_id, len(self.sessions))

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            live.channel = channel
            send_event(
                {
                    "type": "session_started",
                    "at_s": clock.now_s(),
                    "session_id": session_id,
                    "avatar": config.avatar_name,
                    "persona": config.persona_name,
                    "ice_servers": list(self.ice_servers),
                }
            )

            @channel.on("message")
            def on_message(message) -> None:
                self._spawn(live, self._on_client_message(live, message))

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio":
                from avatar.live.rtc_tuning import shorten_audio_receive_buffer

                for transceiver in pc.getTransceivers():
                    if transceiver.receiver.track is track:
                        shorten_audio_receive_buffer(transceiver.receiver)
                self._spawn(live, self._consume_microphone(live, track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: connection %s", session_id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.close_session(session_id)

        try:
            answer = await answer_offer(pc, sdp, paced_tracks(playout, clock, draw_idle_in_thread=True))
        except BaseException:
            await self.close_session(session_id)
            raise
        self._spawn(
            live, close_unless_connected(pc, lambda: self.close_session(session_id), self.connect_timeout_s)
        )
        return live, answer

    def _conversation(self, lipsync, queue, playout, clock, send_event):
        """The session's conversation loop over the shared engines (VAD and turn rules per session)."""
        from avatar.live.conversation import ConversationSession
        from avatar.turns.vad_silero import SileroVAD

        engines, config = self.engines, self.engines.config
        return ConversationSession(
            vad=SileroVAD(
                model=engines.vad_model,
                min_speech_ms=config.barge_in_min_speech_ms,
                min_silence_ms=SPECULATE_AFTER_SILENCE_MS,  # the speculative reply starts here
            ),
            turn_detector=self._turn_detector(),
            turn_model=engines.turn_model,
            asr=engines.asr,
            llm=engines.llm,
            tts=engines,
            lipsync=lipsync,
            queue=queue,
            playout=playout,
            clock=clock,
            system_prompt=config.system_prompt,
            language=config.language,
            run_blocking=engines.run_blocking,
            on_event=send_event,
            stage_timeouts=config.stage_timeouts,
        )

    def _turn_detector(self):
        """The session's turn rule: with the turn model, asked after a short silence (the silence
        rule's wait when it is unsure, a longer fallback when it calls the turn incomplete);
        without it, the fixed silence rule."""
        from avatar.turns.turn_detector import TurnDetector

        config = self.engines.config
        min_turn_s = config.barge_in_min_speech_ms / 1000
        if self.engines.turn_model is None:  # silence counted from the end of speech
            return TurnDetector(min_turn_s=min_turn_s, end_silence_ms=config.end_of_turn_silence_ms)
        return TurnDetector(
            min_turn_s=min_turn_s,
            end_silence_ms=config.turn_fallback_silence_ms,
            check_after_silence_ms=config.turn_check_silence_ms,
            unsure_silence_ms=config.end_of_turn_silence_ms,
        )

    def _spawn(self, live: LiveSession, coroutine) -> None:
        """Session-owned task: tracked, and cancelled and awaited when the session closes."""
        if live.closed:
            coroutine.close()
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        live.tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(live, t))

    def _task_done(self, live: LiveSession, task: asyncio.Task) -> None:
        live.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("session %s: %s: %s", live.session_id, type(error).__name__, error)

    async def _on_client_message(self, live: LiveSession, message) -> None:
        """The page's controls (docs/live_protocol.md); anything else is ignored, at debug level: a
        peer that sends junk must not fill the log or reach the session."""
        try:
            data = json.loads(message)
        except (TypeError, ValueError):
            log.debug("session %s: ignored a data channel message that is not JSON", live.session_id)
            return
        kind = data.get("type") if isinstance(data, dict) else None
        text = data.get("text") if kind == "say" else None
        if kind == "interrupt":
            await live.session.interrupt("button")
        elif isinstance(text, str) and text.strip() and unsafe_text(text) is None:
            await live.session.interrupt("api")
            await live.session.say(text[:MAX_SAY_CHARS])
        else:
            log.debug("session %s: ignored a data channel message: %.80r", live.session_id, message)

    async def _consume_microphone(self, live: LiveSession, track) -> None:
        """Decode the user's microphone, mono 16 kHz, into the session until the track ends."""
        import av
        from aiortc.mediastreams import MediaStreamError

        from avatar.core.types import AudioChunk

        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in resampler.resample(frame):
                pcm = out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
                await live.session.handle_microphone(AudioChunk(pcm, 16000))

    async def close_session(self, session_id: str) -> None:
        live = self.sessions.pop(session_id, None)
        if live is None or live.closed:
            return
        live.closed = True
        await live.session.close()
        current = asyncio.current_task()
        tasks = [t for t in live.tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_quietly(live.pc)
        log.info("session %s: closed (%d live)", session_id, len(self.sessions))

    async def _on_shutdown(self, app) -> None:
        await asyncio.gather(*(self.close_session(sid) for sid in list(self.sessions)))
