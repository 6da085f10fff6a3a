"""The avatar library: named avatars (photo, voice, persona, knowledge) and the checks before one is made."""
