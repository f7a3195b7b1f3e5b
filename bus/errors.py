"""Errors a node survives. Engines raise subclasses (nodes/errors.py draws the tree); the runtime
in bus/node.py turns any EngineError into an `error` tap event and keeps the node running."""


class EngineError(RuntimeError):
    """An engine could not do one piece of work (or could not load); the node goes on."""
