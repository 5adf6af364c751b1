"""The agent: registers with the master, runs tasks through an executor backend, reports their status."""
