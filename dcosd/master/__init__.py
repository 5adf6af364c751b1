"""The master: state, APIs, placement and the leader-only loops."""
