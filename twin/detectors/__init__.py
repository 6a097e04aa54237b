"""Detectors: pure state machines fed by the tank and nozzle actors, returning findings."""
