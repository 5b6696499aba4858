"""The lab: a disposable Kubernetes look-alike made of real Linux networking."""
