"""`netdoctor lab …`: build, break, fix and tear down a lab cluster."""

import typer

app = typer.Typer(help="A disposable cluster made of real Linux networking.", no_args_is_help=True)
