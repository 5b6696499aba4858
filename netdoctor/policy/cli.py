"""`netdoctor policy …`: offline and live NetworkPolicy questions."""

import typer

app = typer.Typer(help="Who may talk to whom under the NetworkPolicies, and why.", no_args_is_help=True)
