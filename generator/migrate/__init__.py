"""Declarative migrations: what brings a live database to the config.

Enters: a live connection and the rendered statements. Leaves: a plan (the
statements, a fingerprint of what refdata owns or touches, which steps drop
data), built by diffing live against a scratch database that holds the
desired state (plan.py, scratch.py); and the removal of refdata's objects
(uninstall.py).
"""
