"""Renderers of a finished Report: text (rich), json, markdown, junit. They never run checks.

Called by `netdoctor.check.command` through `render.render(report, fmt, env, verbose)`; each
format's module has `render(report, ...)`.
"""
