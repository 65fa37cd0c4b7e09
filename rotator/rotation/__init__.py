"""The rotation runtime: the protocol, its steps, the driver that runs them under a lease,
the sweep, and an operator's requests."""
