"""The master's state machine: SQLite schema, migrations, and apply(command)."""
