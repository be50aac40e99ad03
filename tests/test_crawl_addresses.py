"""A crawl connects to public addresses only: result pages and URL lists pointing, straight or
by a redirect, at this machine or inside the network are refused at connect time.

The loopback engine server stands for the public internet through routes (www.bing.com and
img.public.example); two more servers stand for what must stay out of reach: another port of
127.0.0.1, and 127.0.0.2, a machine inside the network. They count every connection."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from curator.crawl import runner
from curator.crawl.addresses import AddressGuard, PrivateAddress, why_not_public
from curator.crawl.http import Fetcher, FetchError, FetchPolicy, new_session
from curator.crawl.runner import CrawlOptions
from curator.demo.localsearch import LocalSearch
from curator.ingest.imaging import Limits
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.crawling import crawl_home

POLICY = FetchPolicy(read_timeout=3, deadline=5, retries=1, backoff=0.05, max_bytes=2_000_000)

PUBLIC = [
    "8.8.8.8",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped, NAT64 and 6to4 forms of a public address
    "64:ff9b::808:808",
    "2002:808:808::1",
]
REFUSED = {
    "10.0.0.1": "private",
    "10.255.255.254": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "non-global",
    "100.127.255.254": "non-global",
    "169.254.169.254": "link-local",
    "127.0.0.1": "loopback",
    "127.1.2.3": "loopback",
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "private",
    "255.255.255.255": "private",
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "febf::1": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.1.2.3": "private",
    "64:ff9b::7f00:1": "loopback",
    "64:ff9b::a9fe:a9fe": "link-local",
    "2002:7f00:1::": "loopback",
    "2002:c0a8:101::": "private",
    "::7f00:1": "reserved",  # IPv4-compatible, long deprecated
    "not an address": "malformed",
}


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass(ip):
    assert why_not_public(ip) is None
    assert AddressGuard().refusal(ip, 443) is None


@pytest.mark.parametrize(("ip", "why"), REFUSED.items())
def test_addresses_off_the_public_internet_are_refused(ip, why):
    assert why_not_public(ip) == why
    assert AddressGuard().refusal(ip, 80) == why
    assert AddressGuard(allow_private=True).refusal(ip, 80) is None


def test_a_routed_endpoint_is_allowed_on_its_own_port_only():
    guard = AddressGuard(endpoints=frozenset({("127.0.0.1", 8080), ("::1", 8080)}))
    assert guard.refusal("127.0.0.1", 8080) is None
    assert guard.refusal("0:0:0:0:0:0:0:1", 8080) is None  # however it is written
    assert guard.refusal("127.0.0.1", 8081) == "loopback"
    assert guard.refusal("127.0.0.2", 8080) == "loopback"
    with pytest.raises(PrivateAddress, match=r"localhost \(127\.0\.0\.1\) is a loopback"):
        guard.check_name("localhost", 9)
    guard.check_name("no-such-host.invalid", 80)  # best effort: left to the proxy


@dataclass
class Hosts:
    public: EngineServer  # the engine and an image host, public by routes
    machine: EngineServer  # 127.0.0.1, another port: this very machine
    inside: EngineServer  # 127.0.0.2: a machine inside the network
    targets: dict[str, str] = field(default_factory=dict)

    @property
    def routes(self) -> dict[str, str]:
        return {**self.public.routes, "img.public.example": self.public.base}

    def serve_targets(self) -> None:
        """Image URLs off the public internet, by name, each an image of its own."""
        p, q = self.machine.port(0), self.inside.port(0)
        self.targets = {
            "other-address": f"http://127.0.0.2:{q}/img/other-address.jpg",
            "hex-form": f"http://0x7f.2:{q}/img/hex-form.jpg",
            "localhost": f"http://localhost:{p}/img/localhost.jpg",
            "mapped": f"http://[::ffff:127.0.0.1]:{p}/img/mapped.jpg",
            "decimal": f"http://2130706433:{p}/img/decimal.jpg",
            "other-port": f"http://127.0.0.1:{p}/img/other-port.jpg",
        }
        for seed, (name, url) in enumerate(self.targets.items()):
            host = self.inside if f":{q}/" in url else self.machine
            host.add_image(f"{name}.jpg", Behaviour(good_jpeg(3100 + seed)))

    def listing(self) -> list[str]:
        """A public image, each target straight, and each behind a public redirect."""
        self.public.add_image("good.jpg", Behaviour(good_jpeg(3000)))
        urls = ["http://img.public.example/img/good.jpg"]
        for name, target in self.targets.items():
            self.public.add_image(
                f"to-{name}.jpg", Behaviour(status=302, headers={"Location": target})
            )
            urls += [target, f"http://img.public.example/img/to-{name}.jpg"]
        return urls


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    found = Hosts(EngineServer().start(), EngineServer().start(), EngineServer(host="127.0.0.2"))
    found.inside.start()
    found.serve_targets()
    yield found
    for server in (found.public, found.machine, found.inside):
        server.stop()


def sources(home: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(home / "catalog.db") as db:
        return {
            locator: (outcome, reason)
            for locator, outcome, reason in db.execute(
                "SELECT locator, outcome, reason FROM sources"
            )
        }


def images(home: Path) -> int:
    with sqlite3.connect(home / "catalog.db") as db:
        return db.execute("SELECT count(*) FROM images").fetchone()[0]


def query_for(engine: str, hosts: Hosts, urls: list[str], tmp_path: Path) -> str:
    if engine == "urls":
        listing = tmp_path / "urls.txt"
        listing.write_text("\n".join(urls) + "\n")
        return str(listing)
    hosts.public.results["couple"] = [(url, None) for url in urls]
    return "couple"


@pytest.mark.parametrize("engine", ["bing", "urls"])
def test_private_targets_straight_or_redirected_are_refused_unreached(tmp_path, hosts, engine):
    urls = hosts.listing()
    home = tmp_path / "home"
    query = query_for(engine, hosts, urls, tmp_path)
    options = CrawlOptions(engine=engine, routes=hosts.routes, policy=POLICY, max_images=50)
    summary = crawl_home(home, [query], options)[query]
    got = sources(home)
    assert got.pop("http://img.public.example/img/good.jpg") == ("added", None)
    assert got == {url: ("failed", "private-address") for url in urls[1:]}
    assert summary["added"] == 1 and summary["failed_by_reason"] == {"private-address": 12}
    assert images(home) == 1
    assert hosts.machine.connections == 0 and hosts.inside.connections == 0
    # Each refusal is asked once: never retried as a passing connection error.
    for name in hosts.targets:
        assert len(hosts.public.image_requests(f"to-{name}.jpg")) == 1


def test_allow_private_lets_them_through_and_fetches_earlier_refusals_again(
    tmp_path, hosts, monkeypatch, cli
):
    urls = hosts.listing()
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    real = runner.new_session
    monkeypatch.setattr(runner, "new_session", lambda **kw: real(**{**kw, "routes": hosts.routes}))
    refused = cli("crawl", listing, "--engine", "urls", "--retries", "0", "--json")
    assert refused.exit_code == 0, refused.stderr
    counts = json.loads(refused.stdout)["queries"][str(listing)]
    assert counts["failed_by_reason"] == {"private-address": 12}
    assert hosts.machine.connections == hosts.inside.connections == 0
    allowed = cli("crawl", listing, "--engine", "urls", "--allow-private", "--json")
    assert allowed.exit_code == 0, allowed.stderr
    counts = json.loads(allowed.stdout)["queries"][str(listing)]
    # Each target once straight and once redirected: one added, the other its exact copy.
    assert counts["failed"] == 0 and counts["known"] == 1, counts
    assert (counts["added"], counts["exact_duplicate"]) == (6, 6)
    for name in ("localhost", "mapped", "decimal", "other-port"):
        assert len(hosts.machine.image_requests(f"{name}.jpg")) == 2
    for name in ("other-address", "hex-form"):
        assert len(hosts.inside.image_requests(f"{name}.jpg")) == 2


def test_the_crawl_help_names_the_switch(cli):
    result = cli("crawl", "--help")
    assert result.exit_code == 0
    assert "--allow-private" in result.stdout and "intranet" in result.stdout


def test_a_site_on_a_private_address_is_a_refused_page_not_no_network(tmp_path, hosts):
    hosts.inside.site_pages["index.html"] = "<img src='/img/x.jpg'>"
    site = f"{hosts.inside.base}/site/index.html"
    options = CrawlOptions(engine="greedy", routes=hosts.routes, policy=POLICY)
    summary = crawl_home(tmp_path / "home", [site], options)[site]
    assert summary["pages_failed_by_reason"] == {"private-address": 1}
    assert hosts.inside.connections == 0


class _Elsewhere(LocalSearch):
    """The demo's engine, listing pictures on other loopback addresses beside its own."""

    def __init__(self, root: Path, results: dict[str, list[str]], others: list[str]) -> None:
        super().__init__(root, results)
        self.others = others

    def page(self, query: str, first: int) -> bytes:
        tiles = "".join(
            f'<div class="imgpt"><a class="iusc" m=\'{json.dumps({"murl": url})}\'></a></div>'
            for url in (self.others if first == 0 else [])
        )
        return (
            super().page(query, first).replace(b"</div></body>", tiles.encode() + b"</div></body>")
        )


def test_the_demo_engine_is_allowed_its_own_address_only(tmp_path, hosts):
    web = tmp_path / "web"
    web.mkdir()
    (web / "own.jpg").write_bytes(good_jpeg(3200))
    targets = hosts.targets
    elsewhere = [targets["other-port"], targets["other-address"]]
    with _Elsewhere(web, {"couple": ["own.jpg"]}, elsewhere) as engine:
        options = CrawlOptions(routes=engine.routes, policy=POLICY)
        home = tmp_path / "home"
        summary = crawl_home(home, ["couple"], options)["couple"]
    assert summary["added"] == 1 and summary["failed_by_reason"] == {"private-address": 2}
    assert sources(home)[f"{engine.base}/img/own.jpg"] == ("added", None)
    assert hosts.machine.connections == 0 and hosts.inside.connections == 0


def test_a_redirect_from_the_routed_engine_to_another_port_is_refused(tmp_path, hosts):
    targets = hosts.targets
    public = hosts.public
    urls = []
    for name in ("other-port", "other-address"):
        public.add_image(
            f"hop-{name}.jpg", Behaviour(status=301, headers={"Location": targets[name]})
        )
        urls.append(public.image_url(f"hop-{name}.jpg"))  # the engine's own address
    public.results["couple"] = [(url, None) for url in urls]
    options = CrawlOptions(routes=public.routes, policy=POLICY)
    summary = crawl_home(tmp_path / "home", ["couple"], options)["couple"]
    assert summary["failed_by_reason"] == {"private-address": 2}
    assert len(public.image_requests()) == 2  # the engine itself was asked
    assert hosts.machine.connections == 0 and hosts.inside.connections == 0


def test_through_a_proxy_the_target_is_checked_before_sending(tmp_path, hosts, monkeypatch):
    proxy = EngineServer().start()
    try:
        # It answers for every host from its own images, as if it passed them on.
        for seed, name in enumerate(("good", "other-address", "localhost")):
            proxy.add_image(f"{name}.jpg", Behaviour(good_jpeg(3300 + seed)))
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "HTTP_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy.base)
        targets = hosts.targets
        urls = [
            "http://img.public.example/img/good.jpg",
            targets["other-address"],
            targets["localhost"],
        ]
        listing = tmp_path / "urls.txt"
        listing.write_text("\n".join(urls) + "\n")
        options = CrawlOptions(engine="urls", routes=hosts.routes, policy=POLICY, trust_env=True)
        home = tmp_path / "home"
        summary = crawl_home(home, [str(listing)], options)[str(listing)]
        assert summary["added"] == 1 and summary["failed_by_reason"] == {"private-address": 2}
        # The public image came through the proxy; nothing was asked of it for the others.
        assert [r.path for r in proxy.requests] == ["/img/good.jpg"]
        assert hosts.public.connections == 0
        assert hosts.machine.connections == 0 and hosts.inside.connections == 0
        allowed = CrawlOptions(
            engine="urls",
            routes=hosts.routes,
            trust_env=True,
            policy=FetchPolicy(allow_private=True, retries=0),
            limits=Limits(max_bytes=2_000_000),
        )
        summary = crawl_home(home, [str(listing)], allowed)[str(listing)]
        assert summary["added"] == 2 and summary["known"] == 1  # through the proxy now
        asked = sorted(r.path for r in proxy.requests[1:])
        assert asked == ["/img/localhost.jpg", "/img/other-address.jpg"]
    finally:
        proxy.stop()


def self_signed(folder: Path, name: str) -> tuple[str, str]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=60,
    )  # fmt: skip
    if done.returncode:
        pytest.skip(f"openssl cannot make a certificate: {done.stderr.decode()[-200:]}")
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_tls_speaks_to_the_name_on_the_address_that_was_checked(tmp_path):
    cert, key = self_signed(tmp_path, "localhost")
    server = EngineServer(tls=(cert, key)).start()
    try:
        server.add_image("x.jpg", Behaviour(good_jpeg(3400)))
        url = f"https://localhost:{server.port(0)}/img/x.jpg"

        def fetch(policy: FetchPolicy, target: str) -> bytes:
            session = new_session(policy=policy)
            session.verify = cert
            try:
                return Fetcher(session, policy, threading.Event()).image(target).content
            finally:
                session.close()

        with pytest.raises(FetchError) as refused:
            fetch(FetchPolicy(retries=0), url)
        assert refused.value.reason == "private-address" and not refused.value.transient
        assert server.connections == 0
        allowed = FetchPolicy(retries=0, allow_private=True)
        assert fetch(allowed, url) == good_jpeg(3400)
        assert server.tls_names == ["localhost"]  # SNI: the name, not the address
        # The certificate is checked against the name too: by address it does not match.
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(allowed, f"https://127.0.0.1:{server.port(0)}/img/x.jpg")
    finally:
        server.stop()
