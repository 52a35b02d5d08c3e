"""The composition root and what it wires: settings, clock, logging, metrics, policy, and the
HTTP, worker, service, CLI, simulation and recording packages."""
