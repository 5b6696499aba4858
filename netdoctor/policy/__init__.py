"""NetworkPolicy engine: who may talk to whom, and why.

`model` reads policies, pods and namespaces into a World; `engine` decides one flow with
Kubernetes' exact semantics (pure, no I/O); `matrix` and `render` serve `netdoctor policy matrix`
and `explain` (`cli`); `sources` reads manifests or, through `netdoctor.cluster`, a live cluster.
Called by the `policy` commands and by `netdoctor.check.resolve` for the check's policy layer.
"""
