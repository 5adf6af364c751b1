"""Universe package repositories and package rendering (see DESIGN.md).

``repository`` loads repositories and keeps a prioritised catalogue; ``render`` turns a package and
options into a Marathon app definition, purely.
"""
