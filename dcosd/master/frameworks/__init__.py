"""Two-level scheduling on the leader: the allocation loop and the built-in frameworks (see DESIGN.md)."""
