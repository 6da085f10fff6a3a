"""Speech recognition engines: Whisper (embedded) and SenseVoice (neural, with emotion and events)."""
