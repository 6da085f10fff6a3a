"""The console's tabs, one module each: `build(console) -> <Tab>` lays the tab out and returns
the components other code needs, `wire(...)` connects its buttons to `webui.console.Console`
handlers. `webui.app.build_app` lays out every tab first, then wires them, because a library
change in one tab refreshes pickers in the others (`views.LibraryViews`).

Gradio is imported inside the functions, so the package imports without it.
"""
