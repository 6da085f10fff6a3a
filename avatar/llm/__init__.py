"""Thinking: chat-model clients, the prompt, the offline knowledge-base answerer and its knowledge."""
