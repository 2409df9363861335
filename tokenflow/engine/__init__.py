"""The token life cycle: the state machine, single flight, and the identity of a token."""
