"""The lab's Kubernetes API server: object store, HTTPS routes, exec over WebSocket."""
