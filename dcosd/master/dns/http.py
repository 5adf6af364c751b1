"""The Mesos-DNS HTTP API (mesos-dns resolver.go, docs/http.md) as aiohttp handlers.

    api = DnsHttpApi.for_server(dns_server)
    app.add_routes(api.routes(prefix="/mesos_dns"))    # or: app.add_subapp("/mesos_dns", api.app())

``GET /v1/version``, ``/v1/config``, ``/v1/hosts/{host}``, ``/v1/hosts/{host}/ports``
(501, as mesos-dns), ``/v1/services/{service}``, ``/v1/enumerate``, ``/v1/axfr``: same
JSON shapes as mesos-dns, read from the RecordSet the DNS server answers from.
"""

from __future__ import annotations

from typing import Any, Callable

from aiohttp import web

from dcosd.master.dns.records import RecordSet

MESOS_DNS_URL = "https://github.com/mesosphere/mesos-dns"


class DnsHttpApi:
    def __init__(
        self,
        records: Callable[[], RecordSet],
        *,
        version: str = "dcosd",
        settings: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        """``records`` returns the current RecordSet; ``settings`` adds to /v1/config."""
        self._records = records
        self._version = version
        self._settings = settings

    @classmethod
    def for_server(cls, server: Any) -> "DnsHttpApi":
        from dcosd.master.dns.server import VERSION

        def settings() -> dict[str, Any]:
            cfg = server.config
            fwd = server.forwarder
            upstreams = [str(u) for u in fwd.upstreams] if fwd is not None else list(cfg.upstreams or ())
            return {
                "Port": server.port,
                "Listener": cfg.host,
                "Timeout": cfg.forward_timeout,
                "Resolvers": upstreams,
                "ExternalOn": bool(upstreams),
            }

        return cls(lambda: server.records, version=VERSION, settings=settings)

    def routes(self, prefix: str = "") -> list[web.RouteDef]:
        p = prefix.rstrip("/")
        return [
            web.get(p + "/v1/version", self.version),
            web.get(p + "/v1/config", self.config),
            web.get(p + "/v1/hosts/{host}", self.hosts),
            web.get(p + "/v1/hosts/{host}/ports", self.ports),
            web.get(p + "/v1/services/{service}", self.services),
            web.get(p + "/v1/enumerate", self.enumerate),
            web.get(p + "/v1/axfr", self.axfr),
        ]

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(self.routes())
        return app

    # ------------------------------------------------------------------ handlers
    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"Service": "Mesos-DNS", "URL": MESOS_DNS_URL, "Version": self._version})

    async def config(self, request: web.Request) -> web.Response:
        rs = self._records()
        c = rs.config
        soa = rs.soa
        body: dict[str, Any] = {
            "Masters": list(rs.get("master." + rs.domain, "A")),
            "RefreshSeconds": 0,  # records follow the replicated state, not a poll
            "TTL": rs.ttl,
            "SRVRecordDefaultWeight": c.srv_weight,
            "SOASerial": soa.serial,
            "SOARefresh": soa.refresh,
            "SOARetry": soa.retry,
            "SOAExpire": soa.expire,
            "SOAMinttl": soa.minimum,
            "SOAMname": soa.mname,
            "SOARname": soa.rname,
            "Domain": rs.domain.rstrip("."),
            "IPSources": ["netinfo", "host"],
            "RecurseOn": True,
            "DnsOn": True,
            "HttpOn": True,
            "EnforceRFC952": False,
            "SetTruncateBit": True,
            "EnumerationOn": True,
        }
        body.update(self._settings())
        return web.json_response(body)

    async def hosts(self, request: web.Request) -> web.Response:
        rs = self._records()
        name = RecordSet.key(request.match_info["host"])
        out = [{"host": name, "ip": ip} for t in ("A", "AAAA") for ip in rs.get(name, t)]
        return web.json_response(out or [{"host": "", "ip": ""}])

    async def ports(self, request: web.Request) -> web.Response:
        return web.Response(status=501, text="To be implemented...")

    async def services(self, request: web.Request) -> web.Response:
        rs = self._records()
        service = request.match_info["service"]
        out = []
        for srv in rs.get(service, "SRV"):
            for t in ("A", "AAAA"):
                ips = rs.get(srv.target, t)
                if ips:
                    out.append({"service": service, "host": srv.target, "ip": ips[0], "port": str(srv.port)})
        return web.json_response(out or [{"service": "", "host": "", "ip": "", "port": ""}])

    async def enumerate(self, request: web.Request) -> web.Response:
        return web.json_response(self._records().enumerate_json())

    async def axfr(self, request: web.Request) -> web.Response:
        rs = self._records()
        soa = rs.soa
        return web.json_response(
            {
                "TTL": rs.ttl,
                "Serial": soa.serial,
                "RefreshSeconds": 0,
                "Mname": soa.mname,
                "Rname": soa.rname,
                "Domain": rs.domain.rstrip("."),
                "Records": rs.rrsets_json(),
            }
        )
