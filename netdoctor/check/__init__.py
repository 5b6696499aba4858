"""`netdoctor check`: the front of the pipeline and the command that runs all of it.

`target` parses what the user typed (no cluster needed, so bad syntax is exit 2); `resolve` reads
the API objects into Facts; `plan` turns Facts into steps and probe placement (pure: `--plan`
prints it); `command` wires target → resolve → plan → probe → judge → report and maps the verdict
to an exit code. Registered on the app by `netdoctor.cli`. `nodes` reads the nodes the question
involves, and `plan` samples them.
"""

DEFAULT_MAX_NODES = 6  # --max-nodes: here so that `check --help` imports nothing to show it
