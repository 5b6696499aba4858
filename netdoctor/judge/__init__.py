"""The judge: turns Evidence (API facts + probe observations) into a Report. No I/O.

Called by `netdoctor.check.command` after the probe stage, through `verdict.judge`. One module per
layer (`target`, `dns`, `endpoints`, `paths` for Pod IP / Service IP / cross-node, `policy`) returns
its CheckResults; `hops` follows each connection hop by hop through the captures; `verdict` applies
the runbook (order, prerequisites → SKIP with the reason) and `diagnose` names the broken layer,
the most likely cause and the next commands.
"""
