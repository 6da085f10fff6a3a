"""Latency tuning of aiortc's receive path for the server's microphone input.

aiortc gives every audio receiver a fixed jitter buffer that hands a packet to the decoder only
once four more packets are behind it (`JitterBuffer(capacity=16, prefetch=4)`): a constant 80 ms
with 20 ms Opus packets. That depth smooths *playback*; the server never plays the user's
microphone, it only listens (VAD, ASR), and every millisecond there is added to both the reply
latency (the end of speech is seen later) and barge-in (the onset is seen later). With
`prefetch=1` a packet is released when the next one arrives: 20 ms.

Packet loss is handled as aiortc always does (a gap holds the buffer until it fills or overflows),
so the shallower buffer only removes the standing delay. The buffer is a private attribute of
`RTCRtpReceiver`; when a future aiortc renames it, this logs a warning and changes nothing.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

MIC_PREFETCH_PACKETS = 1
_BUFFER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


def shorten_audio_receive_buffer(receiver, prefetch_packets: int = MIC_PREFETCH_PACKETS) -> bool:
    """Give an audio `RTCRtpReceiver` a jitter buffer of `prefetch_packets`; True when applied."""
    from aiortc.jitterbuffer import JitterBuffer

    current = getattr(receiver, _BUFFER_ATTRIBUTE, None)
    if not isinstance(current, JitterBuffer) or getattr(receiver, "_RTCRtpReceiver__kind", None) != "audio":
        log.warning("aiortc internals changed: microphone jitter buffer left at its default depth")
        return False
    setattr(receiver, _BUFFER_ATTRIBUTE, JitterBuffer(capacity=current.capacity, prefetch=prefetch_packets))
    return True
