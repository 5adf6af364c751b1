# PyInstaller runtime hook (packaging/dcosd.spec): children of the binary get the host's environment.
#
# The one-file bootloader starts the interpreter with LD_LIBRARY_PATH pointing into its extraction
# directory and with _PYI_* variables naming it. Inherited, they would make every program dcosd starts
# — systemctl and journalctl from `dcosd install`, task supervisors and the tasks of the cgroups and
# process backends — load the bundle's libcrypto, libz, libstdc++… instead of the host's, and a child
# `dcosd` (a task supervisor) would run out of this process's extraction directory, which the
# bootloader deletes when this process ends although the supervisor lives on. This process does not
# need them any more: the dynamic loader read LD_LIBRARY_PATH at exec, and sys._MEIPASS is set.
import os

_orig = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
if _orig is not None:
    os.environ["LD_LIBRARY_PATH"] = _orig
else:
    os.environ.pop("LD_LIBRARY_PATH", None)
for _name in [n for n in os.environ if n.startswith("_PYI_")]:
    del os.environ[_name]
