"""The built-in job framework (Metronome role): see DESIGN.md."""
