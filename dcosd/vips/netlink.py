"""VIP addresses on the loopback interface, through rtnetlink. Stdlib sockets only, no `ip` binary.

Every address the agent adds is a /32 on ``lo`` carrying the label ``lo:dcosdvip``, so the
agent can find (and remove) its own addresses after a crash without touching anyone else's.
An address on ``lo`` is local to this network namespace: connections from here, and packets
routed here by others, reach the listener bound on it; nothing is announced on any link.
The calls are a few microseconds each and block only on the kernel.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

LABEL = "lo:dcosdvip"
LOOPBACK = "lo"

_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_F_REQUEST, _F_ACK, _F_EXCL, _F_CREATE, _F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
_IFA_ADDRESS, _IFA_LOCAL, _IFA_LABEL = 1, 2, 3
_HDR = struct.Struct("=IHHII")
_IFADDR = struct.Struct("=BBBBI")
_RTA = struct.Struct("=HH")


class NetlinkError(OSError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    size = _RTA.size + len(payload)
    return _RTA.pack(size, kind) + payload + b"\0" * ((4 - size % 4) % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off + _RTA.size <= len(data):
        size, kind = _RTA.unpack_from(data, off)
        if size < _RTA.size:
            break
        out[kind] = data[off + _RTA.size: off + size]
        off += (size + 3) & ~3
    return out


class Rtnl:
    """One rtnetlink socket; used from one thread (the agent's event loop)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
        self.sock.bind((0, 0))
        self.seq = 0
        self.index = socket.if_nametoindex(LOOPBACK)

    def close(self) -> None:
        self.sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        self.seq += 1
        seq = self.seq
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags | _F_REQUEST, seq, 0) + body)
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + _HDR.size <= len(data):
                size, mtype, _flags, mseq, _pid = _HDR.unpack_from(data, off)
                payload = data[off + _HDR.size: off + size]
                off += (size + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return replies
                if mtype == _NLMSG_DONE:
                    return replies
                replies.append(payload)

    def _addr_body(self, ip: str, with_label: bool) -> bytes:
        packed = ipaddress.IPv4Address(ip).packed
        body = _IFADDR.pack(socket.AF_INET, 32, 0, 0, self.index)
        body += _attr(_IFA_LOCAL, packed) + _attr(_IFA_ADDRESS, packed)
        if with_label:
            body += _attr(_IFA_LABEL, LABEL.encode() + b"\0")
        return body

    def add(self, ip: str) -> bool:
        """Put ``ip``/32 on lo; False when it is already there (ours or not)."""
        try:
            self._request(_RTM_NEWADDR, _F_ACK | _F_CREATE | _F_EXCL, self._addr_body(ip, True))
            return True
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise

    def remove(self, ip: str) -> bool:
        """Take ``ip``/32 off lo; False when it was not there."""
        try:
            self._request(_RTM_DELADDR, _F_ACK, self._addr_body(ip, False))
            return True
        except NetlinkError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                return False
            raise

    def ours(self) -> list[str]:
        """The addresses on lo labelled as the agent's VIPs."""
        out = []
        for payload in self._request(_RTM_GETADDR, _F_DUMP, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, prefix, _f, _scope, index = _IFADDR.unpack_from(payload)
            attrs = _attrs(payload[_IFADDR.size:])
            if family != socket.AF_INET or index != self.index or prefix != 32:
                continue
            if attrs.get(_IFA_LABEL, b"").rstrip(b"\0").decode(errors="replace") == LABEL and _IFA_LOCAL in attrs:
                out.append(str(ipaddress.IPv4Address(attrs[_IFA_LOCAL][:4])))
        return out
