"""The pool: what exists (kinds, devices, nodes, volumes) and how it is sliced."""
