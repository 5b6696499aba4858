"""The lab: a disposable Kubernetes look-alike made of real Linux networking.

Network namespaces, veth, bridges, VXLAN and nftables form the data plane (`net`, `cni` for the
flannel, Calico or Cilium wiring, `dataplane`, `proxy`, `iptables`, `netpol`, `dnsserver`); `api/`
is an HTTPS Kubernetes API server; `controller`,
`kubelet` and `runtime` run pods; `faults` breaks it the way real clusters break; `lifecycle`
brings it up and down. Its commands (`cli`) are registered on the app by `netdoctor.cli`; the lab
never imports the CLI or the check pipeline — netdoctor reaches it only through the Kubernetes API.
"""
