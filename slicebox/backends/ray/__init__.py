"""The Ray backend: one pool across the nodes of a Ray cluster (``backend.RayBackend``),
a node agent on each node (``agent``), gangs (``gang``) and data across nodes (``transfer``).

Importing this package imports nothing of Ray; its modules do, when they are used.
"""
