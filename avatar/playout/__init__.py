"""Paced A/V output shared by live conversations and livestreams: one clock, paired audio and frames."""
