# PyInstaller runtime hook (packaging/dcosd.spec): pystemd's D-Bus core without its package __init__.
#
# `import pystemd.dbuslib` runs pystemd/__init__.py first, which imports pystemd.systemd1 → pystemd.base
# → lxml.etree: 6 MB of resident memory in the agent and 5 MB of the binary, for an API (SDUnit,
# introspection) dcosd never uses — dcosd/executor/systemd.py talks D-Bus through pystemd.dbuslib and
# pystemd.dbusexc only. So the package is registered here as a bare namespace over its bundled
# directory; its submodules import as usual. lxml is not in the binary: pystemd.systemd1 & co. fail.
import os
import sys
import types

if "pystemd" not in sys.modules:
    _pkg = types.ModuleType("pystemd", "pystemd's D-Bus core (dbuslib, dbusexc); see packaging/rth_pystemd_core.py")
    _pkg.__path__ = [os.path.join(sys._MEIPASS, "pystemd")]
    _pkg.__package__ = "pystemd"
    sys.modules["pystemd"] = _pkg
