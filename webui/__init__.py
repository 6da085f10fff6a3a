"""The web console (`avatar webui`): a thin Gradio layer over the plain-function API.

Everything here is importable without Gradio: `webui.app` imports it inside its functions, and the
pure helpers (engine health, LLM connection test, tag insertion, formatting, the live-server
process) are small modules with unit tests that need no browser.
"""
