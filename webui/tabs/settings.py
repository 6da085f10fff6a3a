"""The "Settings" tab: which engines can run here, the folders in use, an LLM connection test."""

from __future__ import annotations

from dataclasses import dataclass

from webui import formatting, health
from webui.console import Console
from webui.llm_check import check_llm_endpoint, default_base_url


@dataclass(frozen=True)
class SettingsTab:
    engines_table: object
    model_dir: object
    refresh_engines: object
    llm_url: object
    llm_key: object
    llm_test: object
    llm_result: object


def engines_markdown() -> tuple[str, str, str]:
    """(engines table, model folder line, the render tab's unavailable-engines note), all Markdown."""
    statuses = health.probe_engines()
    path, note = health.model_dir()
    model_md = f"**Model folder** (`{health.MODEL_DIR_ENV}`, display only): `{path}` ({note})"
    return formatting.engines_table(statuses), model_md, formatting.unavailable_engines_note(statuses)


def build(console: Console) -> SettingsTab:
    import gradio as gr

    with gr.Tab("Settings", id="settings", elem_id="tab-settings"):
        gr.Markdown("### Engines on this machine")
        engines_table = gr.Markdown(elem_id="engines-table")
        model_dir = gr.Markdown(elem_id="model-dir")
        gr.Markdown(
            f"**Avatar library** (`--library` / `AVATAR_LIBRARY`): `{console.library_root}`  \n"
            f"**Work folder** (renders, uploads; removed when the console stops): `{console.work_dir}`"
        )
        refresh_engines = gr.Button("Check again", size="sm")
        gr.Markdown("### Language model endpoint (OpenAI-compatible)")
        with gr.Row():
            llm_url = gr.Textbox(label="Base URL", value=default_base_url(), scale=3, elem_id="llm-url")
            llm_key = gr.Textbox(label="API key (optional)", type="password", scale=2, elem_id="llm-key")
            llm_test = gr.Button("Test connection", scale=1, elem_id="llm-test")
        llm_result = gr.Markdown(elem_id="llm-result", elem_classes="status-line")
        gr.Markdown(
            "The test sends one `GET {base}/models` (3 s timeout). The live server's replies come "
            "from the offline knowledge-base answerer; to use this endpoint instead, start "
            "`avatar serve --llm openai --llm-url URL --llm-model NAME`."
        )
    return SettingsTab(engines_table, model_dir, refresh_engines, llm_url, llm_key, llm_test, llm_result)


def wire(tab: SettingsTab, unavailable_note) -> None:
    """`unavailable_note`: the Render tab's Markdown that lists engines that cannot run here."""

    def on_llm_test(url, key):
        report = check_llm_endpoint(url, key)
        icon = "✓" if report.ok else ("⚠" if report.reachable else "✗")
        return f"{icon} {formatting.escape_markdown(report.message)}"

    tab.llm_test.click(on_llm_test, [tab.llm_url, tab.llm_key], tab.llm_result)
    tab.refresh_engines.click(engines_markdown, None, [tab.engines_table, tab.model_dir, unavailable_note])
