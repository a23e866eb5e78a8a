"""The service: palettenet/1 (protocol), the engine that answers requests, the daemon, the
broker and its fair queue, CurveZMQ and the client. Imports from backend.core and
backend.wire, never from backend.cli."""
