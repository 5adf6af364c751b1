"""The frozen binary's entry point (PyInstaller runs this file as __main__)."""

from dcosd.__main__ import main

main()
