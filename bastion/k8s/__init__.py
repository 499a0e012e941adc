"""Kubernetes pod terminals: clusters, pod grants, the exec WebSocket connector."""
