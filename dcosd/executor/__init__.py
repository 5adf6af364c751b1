"""Executor backends: how an agent runs a task's process and learns how it ended."""
