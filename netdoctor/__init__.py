"""netdoctor: tells an on-call engineer where a Kubernetes packet is lost, and why."""

__version__ = "0.1.0"
