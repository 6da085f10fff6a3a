"""`avatar serve`: WebRTC conversations with one avatar, many sessions in one process.

Signalling follows the aiortc examples (`POST /offer` with `{"sdp", "type"}`, answered in the same
shape once ICE gathering is complete); docs/live_protocol.md is the contract with the page and the
probe client. Engines are loaded once; each connection gets its own session, queue, playout,
lip-sync state and tracks, and its own tasks, all ended when the peer goes away.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatar.engines.live_set import LiveEngines

log = logging.getLogger("avatar.live")
STATIC_DIR = Path(__file__).with_name("static")
MAX_OFFER_BYTES = 100_000
# The VAD calls speech over after this much silence and the session starts preparing the reply
# then (recognition, LLM, TTS, first frames), held until the turn really ends after the full
# end-of-turn silence (a pause is not an end). 120 ms leaves that work ~380 ms before the turn
# ends, enough for a short question on 2 cores; a pause that long inside a sentence only costs
# a discarded guess (and, with a paid LLM, its tokens).
SPECULATE_AFTER_SILENCE_MS = 120.0


BAD_OFFER = 'expected JSON {"sdp": "...", "type": "offer"}'


async def offer_sdp(request) -> str | None:
    """The SDP of a `POST /offer` body `{"sdp", "type": "offer"}` (docs/live_protocol.md), or None."""
    try:
        params = await request.json()
        sdp, kind = params["sdp"], params["type"]
    except (ValueError, KeyError, TypeError):
        return None
    return sdp if kind == "offer" and isinstance(sdp, str) else None


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
    ) -> None:
        self.engines = engines
        self.token = token
        self.ice_servers = ice_servers
        self.max_sessions = max_sessions
        self.sessions: dict[str, LiveSession] = {}

    # --- HTTP -------------------------------------------------------------------------------------
    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=MAX_OFFER_BYTES)
        app.router.add_get("/", self.page)
        app.router.add_get("/health", self.health)
        app.router.add_post("/offer", self.offer)
        app.router.add_post("/sessions/{session_id}/interrupt", self.interrupt)
        app.on_shutdown.append(self._on_shutdown)
        return app

    def _authorized(self, request) -> bool:
        if not self.token:
            return True
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header, f"Bearer {self.token}")

    @staticmethod
    def _error(status: int, message: str):
        from aiohttp import web

        return web.json_response({"error": message}, status=status)

    async def page(self, request):
        from aiohttp import web

        return web.FileResponse(STATIC_DIR / "index.html")

    async def health(self, request):
        from aiohttp import web

        config = self.engines.config
        return web.json_response(
            {
                "sessions": len(self.sessions),
                "max_sessions": self.max_sessions,
                "avatar": config.avatar_name,
                "persona": config.persona_name,
                "ice_servers": list(self.ice_servers),
                "llm": config.llm,
                "reply_engine": self.engines.reply_engine,
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
        from aiohttp import web

        if not self._authorized(request):
            return self._error(401, "missing or wrong bearer token")
        if len(self.sessions) >= self.max_sessions:
            return self._error(503, f"the server is full ({self.max_sessions} sessions); try again later")
        sdp = await offer_sdp(request)
        if sdp is None:
            return self._error(400, BAD_OFFER)
        try:
            live, answer = await self._open_session(sdp)
        except ValueError as exc:  # aiortc's complaint about an SDP it cannot use
            return self._error(400, f"unusable offer: {exc}")
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session_id": live.session_id})

    # --- sessions ---------------------------------------------------------------------------------
    async def _open_session(self, sdp: str):
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        from avatar.core.clock import SystemClock
        from avatar.playout.av_output import AVOutputQueue, AVPlayout
        from avatar.playout.webrtc_tracks import paced_tracks
        from lipsync.streaming_lipsync import StreamingLipSync

        engines, config = self.engines, self.engines.config
        session_id = secrets.token_hex(6)
        pc = RTCPeerConnection(RTCConfiguration([RTCIceServer(url) for url in self.ice_servers]))
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
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            audio_track, video_track = paced_tracks(playout, clock, draw_idle_in_thread=True)
            pc.addTrack(audio_track)
            pc.addTrack(video_track)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception:
            await self.close_session(session_id)
            raise
        return live, pc.localDescription

    def _conversation(self, lipsync, queue, playout, clock, send_event):
        """The session's conversation loop over the shared engines (VAD and turn rules per session)."""
        from avatar.live.conversation import ConversationSession
        from avatar.turns.turn_detector import TurnDetector
        from avatar.turns.vad_silero import SileroVAD

        engines, config = self.engines, self.engines.config
        return ConversationSession(
            vad=SileroVAD(
                model=engines.vad_model,
                min_speech_ms=config.barge_in_min_speech_ms,
                min_silence_ms=SPECULATE_AFTER_SILENCE_MS,  # the speculative reply starts here
            ),
            turn_detector=TurnDetector(
                min_turn_s=config.barge_in_min_speech_ms / 1000,
                end_silence_ms=config.end_of_turn_silence_ms,  # counted from the end of speech
            ),
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
        try:
            data = json.loads(message)
        except (TypeError, ValueError):
            return
        if data.get("type") == "interrupt":
            await live.session.interrupt("button")
        elif data.get("type") == "say" and str(data.get("text", "")).strip():
            await live.session.interrupt("api")
            await live.session.say(str(data["text"])[:2000])

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
        await live.pc.close()
        log.info("session %s: closed (%d live)", session_id, len(self.sessions))

    async def _on_shutdown(self, app) -> None:
        await asyncio.gather(*(self.close_session(sid) for sid in list(self.sessions)))
