"""The probe stage: short-lived pods in the cluster, commands run in them, packets captured.

`fleet` creates the probe pods (owned by a per-run object, registered for cleanup on create) and
execs in them; `commands` builds the probe commands and parses their output into observations;
`runner` executes a Plan's steps and gathers Evidence; `capture` runs tcpdump at every hop while
the steps run, `pcap` decodes it (the only scapy user) and `inventory` reads each host's
interfaces, routes, neighbours and conntrack. Called by `netdoctor.check.command` between plan
and judge; hands Evidence (see `netdoctor.model`) to the judge.
"""
