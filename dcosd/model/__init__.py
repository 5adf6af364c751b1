"""Pure, stdlib-only domain model: task states, resources, ids, wire types.

Nothing in this package performs I/O, so it can be tested exhaustively and used
from deterministic simulation.
"""
