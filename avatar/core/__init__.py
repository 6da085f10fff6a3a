"""Core layer: value types, errors, the clock, storage, audio and text I/O, the tag language.

Everything here is numpy and the standard library only; every other package may import it, and
it imports nothing from the rest of the toolkit."""
