"""Serving data plane: the model server, the balancer in front of its replicas, the
autoscaler that sizes the replica count, slice sizing from measurement, and an open-loop
load generator. Nothing here imports torch at import time (only the model server does,
in its own process)."""
