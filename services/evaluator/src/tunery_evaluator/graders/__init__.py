"""Graders: built-ins and plugins of the entry-point group ``tunery.eval_graders`` (see base.py for the protocol)."""
