"""sd_notify(3) without libsystemd: tell systemd a Type=notify service is ready, stopping, or its status.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET``
(a path, or an abstract name written with a leading ``@``). Outside systemd the variable is unset and
every call is a no-op returning False. In the one-file binary the unit's main process is
PyInstaller's bootloader and the notifying process its child, hence NotifyAccess=all in the units;
the bootloader stays the main pid (it forwards signals and removes its extraction directory).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

# Taken out of the environment when this module is first imported (by the daemon commands, before
# any task or supervisor is started), as sd_notify(unset_environment=1) does: children must not
# inherit it, or with NotifyAccess=all a process left in the unit could speak for the daemon.
_ADDRESS = os.environ.pop("NOTIFY_SOCKET", None)


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. "READY=1", "STATUS=serving") to systemd; True when a manager was told."""
    address = _ADDRESS
    if not address or not lines:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("ignoring NOTIFY_SOCKET=%r: neither a path nor an abstract socket name", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("could not notify systemd through %s: %s", address.lstrip("\0"), exc)
        return False
    return True


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}")


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def stopping() -> bool:
    return notify("STOPPING=1", "STATUS=stopping")
