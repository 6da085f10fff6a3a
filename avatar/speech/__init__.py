"""Speaking: tagged text to sentences to speech with emotion, voice matching and lip-sync timing."""
