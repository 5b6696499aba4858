"""The cluster boundary: the only package that imports `kubernetes`.

`kube.Kube` connects (kubeconfig rules, bounded requests), reads, creates, deletes, watches and
execs; `objects` holds the small frozen types it hands out (Pod, Service, EndpointSlice, Node, …).
Called by the check stages (resolve reads, the probe fleet creates and execs) and by the live
`policy` commands. Nothing here decides anything.
"""

REQUEST_TIMEOUT = 30.0  # seconds any API call may go without an answer (kubectl's --request-timeout)
