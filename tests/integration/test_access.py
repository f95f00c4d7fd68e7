"""Who may read (issue 15): per-route `allow` lists, trusted proxies (X-Forwarded-For and the
PROXY protocol), bearer tokens and presigned URLs (SigV4 and SigV2, made by boto3 for tuskd's own
URL), against tuskd over real sockets in front of radosgw. Every refusal is shown to reach
neither the cache nor the upstream: tusk_upstream_requests_total stays 0 and the object stays
uncached."""
from __future__ import annotations

import datetime
import os
import socket
import struct
import time
import urllib.parse
from unittest import mock

import boto3
import botocore.auth
import botocore.config
import pytest
import requests

from harness import wait_until
from test_installer_bundle import run_tusk

BODY = b"private image bytes " * 100
TOKENS = ["alpha-token-0123456789abcdef", "beta-token-0123456789abcdef"]
KEYS = {"CLIENTKEY1": "client-secret-one/abc+def", "CLIENTKEY2": "client-secret-two"}


def put(rgw, bucket, key, data):
    rgw.s3("tusk").put_object(Bucket=bucket, Key=key, Body=data)


def upstream_requests(t) -> float:
    return t.metric("tusk_upstream_requests_total")


def write_secret(path, text: str):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return str(path)


def route(bucket, prefix="/images/", **access):
    r = {"prefix": prefix, "upstream": "rgw", "bucket": bucket, "ttl": "1h", "prefetch": "none"}
    r.update(access)
    return r


def refused_untouched(t, r, status, reason_part):
    assert r.status_code == status, (r.status_code, r.text)
    assert reason_part in r.text, r.text
    assert r.headers["Cache-Control"] == "no-store"
    assert upstream_requests(t) == 0, "a refused request went upstream"


# ---------------------------------------------------------------- allow


def test_allow_lists_refuse_other_addresses_before_any_lookup(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "x.img", BODY)
    t = make_tuskd(b, routes=[route(b, "/images/", allow=["10.0.0.0/8", "2001:db8::/32"]),
                              route(b, "/open/", allow=["192.0.2.1", "127.0.0.0/8"])])
    refused_untouched(t, t.get("/images/x.img"), 403, "this address may not read this path")
    assert t.metric("tusk_access_total", route="/images/", result="denied_ip") == 1
    r = t.get("/open/x.img")
    assert r.status_code == 200 and r.content == BODY
    assert t.metric("tusk_access_total", route="/open/", result="allowed") == 1
    # One object, one copy per route key: the refused route never cached it.
    assert t.get("/images/x.img").status_code == 403


def test_ipv6_clients_match_ipv6_ranges_only(rgw, bucket, make_tuskd):
    b = bucket()
    put(rgw, b, "x.img", BODY)
    port = socket.socket(socket.AF_INET6)
    port.bind(("::1", 0))
    p = port.getsockname()[1]
    port.close()
    t = make_tuskd(b, routes=[route(b, "/v6/", allow=["::1/128"]),
                              route(b, "/v4/", allow=["127.0.0.1"])])
    t.config["server"]["listen"].append(f"[::1]:{p}")
    t.write_config()
    t.restart()
    assert requests.get(f"http://[::1]:{p}/v6/x.img", timeout=10).status_code == 200
    assert requests.get(f"http://[::1]:{p}/v4/x.img", timeout=10).status_code == 403
    assert t.get("/v6/x.img").status_code == 403  # 127.0.0.1 is not ::1
    assert t.get("/v4/x.img").status_code == 200


# ---------------------------------------------------------------- trusted proxies


def test_x_forwarded_for_is_believed_from_trusted_peers_only(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    put(rgw, b, "x.img", BODY)
    log = tmp / "access.log"
    t = make_tuskd(b, routes=[route(b, allow=["203.0.113.0/24"])],
                   log={"access_log": str(log), "format": "json"})
    t.config["server"]["trusted_proxies"] = ["127.0.0.1/32", "10.0.0.0/8"]
    t.write_config()
    t.restart()
    get = lambda xff: t.get("/images/x.img", headers={"X-Forwarded-For": xff} if xff else {})
    refused_untouched(t, get(None), 403, "may not read")
    # The right-most entry that is not a trusted proxy is the client.
    assert get("203.0.113.9").status_code == 200
    assert get("198.51.100.7, 203.0.113.9, 10.1.2.3").status_code == 200
    # A client cannot put an allowed address left of its own.
    assert get("203.0.113.9, 198.51.100.7").status_code == 403
    # Junk stops the walk at the last trusted hop (the peer): never a forged address.
    assert get("203.0.113.9, junk").status_code == 403
    lines = wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 5 and
                       log.read_text().splitlines(), 10, what="the access log")
    assert '"client":"203.0.113.9"' in lines[1]

    # The same header from a peer that is not trusted is ignored.
    t.config["server"]["trusted_proxies"] = ["10.0.0.0/8"]
    t.write_config()
    t.reload()
    wait_until(lambda: t.metric("tusk_config_reloads_total", result="ok") == 1, 10,
               what="the reload")
    assert get("203.0.113.9").status_code == 403


def proxy_v2(src: str, dst: str, sport: int, dport: int) -> bytes:
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


def test_the_proxy_protocol_names_the_client_for_trusted_balancers(rgw, bucket, make_tuskd):
    from util import raw_request
    b = bucket()
    put(rgw, b, "x.img", BODY)
    t = make_tuskd(b, routes=[route(b, allow=["203.0.113.0/24"])])
    t.config["server"].update(trusted_proxies=["127.0.0.1"], proxy_protocol=True)
    t.write_config()
    t.restart()  # (readiness is asked on the admin listener, which takes no PROXY header)
    req = b"GET /images/x.img HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n"
    v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 55555 8080\r\n"
    status, _, body = raw_request(t.port, v1 + req)
    assert (status, body) == (200, BODY)
    status, _, _ = raw_request(t.port, b"PROXY TCP4 198.51.100.7 127.0.0.1 5 8080\r\n" + req)
    assert status == 403
    status, _, body = raw_request(t.port, proxy_v2("203.0.113.10", "127.0.0.1", 1, 8080) + req)
    assert (status, body) == (200, BODY)
    # A trusted peer must send the header: a bare request, or a broken header, is refused.
    status, _, body = raw_request(t.port, req)
    assert status == 400 and b"PROXY protocol" in body
    status, _, _ = raw_request(t.port, b"PROXY TCP4 203.0.113.9 127.0.0.1 99999 1\r\n" + req)
    assert status == 400
    assert t.metric("tusk_access_total", result="allowed") == 2
    assert t.metric("tusk_access_total", result="denied_ip") == 1


# ---------------------------------------------------------------- bearer tokens


def test_bearer_tokens_are_checked_and_rotated_by_reload(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    put(rgw, b, "x.img", BODY)
    tokens = tmp / "tokens"
    write_secret(tokens, "# the download robots\n" + "\n".join(TOKENS) + "\n")
    log = tmp / "access.log"
    t = make_tuskd(b, routes=[route(b, auth="token", auth_token_file=str(tokens)),
                              route(b, "/public/")],
                   log={"access_log": str(log), "format": "combined"})
    bearer = lambda tok: {"Authorization": f"Bearer {tok}"}
    r = t.get("/images/x.img")
    refused_untouched(t, r, 401, "a bearer token is required")
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="tusk"'
    refused_untouched(t, t.get("/images/x.img", headers={"Authorization": "Basic eDp5"}), 401,
                      "required")
    refused_untouched(t, t.get("/images/x.img", headers=bearer("wrong-token-0123456789")), 403,
                      "not valid")
    refused_untouched(t, t.get("/images/x.img", headers=bearer(TOKENS[0][:-1])), 403, "not valid")
    r = t.get("/images/x.img", headers=bearer(TOKENS[0]))
    assert (r.status_code, r.headers["X-Cache"], r.content) == (200, "MISS", BODY)
    # Another authorized client is served the same copy.
    r = t.get("/images/x.img", headers={"authorization": f"bearer {TOKENS[1]}"})
    assert (r.status_code, r.headers["X-Cache"]) == (200, "HIT")
    assert t.get("/public/x.img").status_code == 200  # auth: none beside it
    assert t.metric("tusk_access_total", route="/images/", result="no_credentials") == 2
    assert t.metric("tusk_access_total", route="/images/", result="bad_credentials") == 2
    assert t.metric("tusk_access_total", route="/images/", result="allowed") == 2

    # Rotation: the file is re-read on reload; the old token stops working at once.
    new = "gamma-token-0123456789abcdef"
    write_secret(tokens, new + "\n")
    t.reload()
    wait_until(lambda: t.metric("tusk_config_reloads_total", result="ok") == 1, 10,
               what="the reload")
    assert t.get("/images/x.img", headers=bearer(TOKENS[0])).status_code == 403
    assert t.get("/images/x.img", headers=bearer(new)).status_code == 200

    text = wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 9 and
                      log.read_text(), 10, what="the access log")
    for tok in TOKENS + [new]:
        assert tok not in text
    assert " - token:" in text  # the token's id in the remote-user field


# ---------------------------------------------------------------- presigned URLs


def presigner(url: str, access: str, secret: str, version="s3v4", region="us-east-1"):
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name=region,
        config=botocore.config.Config(signature_version=version,
                                      s3={"addressing_style": "path"}))


def presign(client, key="x.img", expires=300, bucket="images"):
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                         ExpiresIn=expires)


@pytest.fixture
def presigned_edge(rgw, bucket, make_tuskd, tmp):
    b = bucket()
    put(rgw, b, "x.img", BODY)
    put(rgw, b, "y.img", b"another object")
    keys = write_secret(tmp / "client.keys",
                        "".join(f"{k}:{v}\n" for k, v in KEYS.items()))
    log = tmp / "access.log"
    t = make_tuskd(b, routes=[route(b, auth="presigned", client_keys_file=keys, query="key")],
                   log={"access_log": str(log), "format": "json"})
    t.access_log = log
    return t


def test_boto3_presigned_urls_are_served_from_one_copy(presigned_edge):
    t = presigned_edge
    c = presigner(t.url, "CLIENTKEY1", KEYS["CLIENTKEY1"])
    url = presign(c)
    assert url.startswith(t.url + "/images/x.img?") and "X-Amz-Signature=" in url
    r = requests.get(url, timeout=10)
    assert (r.status_code, r.headers["X-Cache"], r.content) == (200, "MISS", BODY)
    # Another valid URL (other key, other lifetime) for the same object is a HIT: the X-Amz-*
    # parameters are not part of the key, even on a `query: key` route.
    other = presign(presigner(t.url, "CLIENTKEY2", KEYS["CLIENTKEY2"]), expires=3600)
    r = requests.get(other, timeout=10)
    assert (r.status_code, r.headers["X-Cache"]) == (200, "HIT")
    assert requests.head(url, timeout=10).status_code == 200  # HEAD with a GET URL
    # Walrus-era SigV2 presigned URLs too.
    v2 = presign(presigner(t.url, "CLIENTKEY1", KEYS["CLIENTKEY1"], version="s3"))
    assert "AWSAccessKeyId=CLIENTKEY1" in v2 and "Signature=" in v2
    r = requests.get(v2, timeout=10)
    assert (r.status_code, r.headers["X-Cache"]) == (200, "HIT")
    assert upstream_requests(t) == 1
    text = wait_until(lambda: t.access_log.exists() and
                      len(t.access_log.read_text().splitlines()) >= 4 and
                      t.access_log.read_text(), 10, what="the access log")
    assert '"user":"CLIENTKEY1"' in text and '"user":"CLIENTKEY2"' in text
    for secret in KEYS.values():
        assert secret not in text and urllib.parse.quote(secret, safe="") not in text


def test_every_bad_presigned_url_is_refused_with_its_reason(presigned_edge):
    t = presigned_edge
    c = presigner(t.url, "CLIENTKEY1", KEYS["CLIENTKEY1"])
    get = lambda u: requests.get(u, timeout=10)
    refused_untouched(t, get(t.url + "/images/x.img"), 403, "a presigned URL is required")

    url = presign(c)
    refused_untouched(t, get(url.replace("/images/x.img", "/images/y.img")), 403,
                      "signature does not match")
    refused_untouched(t, get(url.replace("X-Amz-Expires=300", "X-Amz-Expires=301")), 403,
                      "signature does not match")
    unknown = presign(presigner(t.url, "STRANGER", "stranger-secret"))
    refused_untouched(t, get(unknown), 403, "unknown")
    wrong_secret = presign(presigner(t.url, "CLIENTKEY1", "not-the-secret"))
    refused_untouched(t, get(wrong_secret), 403, "signature does not match")
    # Made for another host name of this edge: the signed Host differs.
    other_host = presign(presigner(t.url.replace("127.0.0.1", "localhost"), "CLIENTKEY1",
                                   KEYS["CLIENTKEY1"]))
    refused_untouched(t, get(other_host.replace("localhost", "127.0.0.1")), 403,
                      "signature does not match")
    refused_untouched(t, get(presign(c, expires=8 * 86400)), 403, "7 days")
    other_region = presign(presigner(t.url, "CLIENTKEY1", KEYS["CLIENTKEY1"],
                                     region="eu-west-1"))
    refused_untouched(t, get(other_region), 403, "region")

    # Dated an hour ahead (beyond 15 minutes of clock skew).
    later = datetime.datetime.utcnow() + datetime.timedelta(hours=1)
    with mock.patch.object(botocore.auth.datetime, "datetime",
                           mock.Mock(wraps=datetime.datetime, utcnow=lambda: later)):
        future = presign(c)
    refused_untouched(t, get(future), 403, "in the future")

    # Expiry, with a short X-Amz-Expires.
    short = presign(c, expires=1)
    time.sleep(2.2)
    refused_untouched(t, get(short), 403, "expired")
    assert t.metric("tusk_access_total", result="expired") == 1
    assert t.metric("tusk_access_total", result="no_credentials") == 1
    assert t.metric("tusk_access_total", result="bad_credentials") == 8
    assert t.metric("tusk_access_total", result="allowed") == 0
    # Nothing was cached by the refusals: the first good URL is a MISS.
    r = get(presign(c))
    assert (r.status_code, r.headers["X-Cache"]) == (200, "MISS")


def test_tusk_presign_makes_urls_tuskd_accepts(presigned_edge, tmp):
    t = presigned_edge
    keyfile = write_secret(tmp / "mine.key", f"CLIENTKEY2:{KEYS['CLIENTKEY2']}\n")
    out = run_tusk("presign", t.url + "/images/x.img", "--key-file", keyfile, "--expires", "10m",
                   timeout=30)
    url = out.stdout.strip()
    assert "X-Amz-Expires=600" in url and KEYS["CLIENTKEY2"] not in out.stdout + out.stderr
    r = requests.get(url, timeout=10)
    assert (r.status_code, r.content) == (200, BODY)


# ---------------------------------------------------------------- behind a real HAProxy


def get_from(source: str, port: int, path: str) -> tuple[int, bytes]:
    """GET over a connection from `source` (another loopback address)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("mode", ["send-proxy", "send-proxy-v2", "forwardfor"])
def test_haproxy_in_front_names_the_client(rgw, bucket, make_tuskd, tmp, mode):
    import subprocess
    from harness import free_port
    b = bucket()
    put(rgw, b, "x.img", BODY)
    log = tmp / "access.log"
    t = make_tuskd(b, routes=[route(b, allow=["127.0.0.2"])],
                   log={"access_log": str(log), "format": "json"})
    t.config["server"].update(trusted_proxies=["127.0.0.1"],
                              proxy_protocol=mode.startswith("send-proxy"))
    t.write_config()
    t.restart()
    port = free_port()
    server = f"server edge 127.0.0.1:{t.port} {mode if mode != 'forwardfor' else ''}"
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(
        "global\n  maxconn 100\n"
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n"
        "  timeout server 30s\n"
        + ("  option forwardfor\n" if mode == "forwardfor" else "")
        + f"frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n"
        f"backend be\n  {server}\n")
    ha = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, 10, what="haproxy listening")
        assert get_from("127.0.0.2", port, "/images/x.img") == (200, BODY)
        assert get_from("127.0.0.3", port, "/images/x.img")[0] == 403
        # Directly, 127.0.0.2 is not a trusted peer: what it would say is not asked.
        assert get_from("127.0.0.2", t.port, "/images/x.img")[0] == 200
        assert get_from("127.0.0.3", t.port, "/images/x.img")[0] == 403
    finally:
        ha.terminate()
        ha.wait(timeout=10)
    text = wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 4 and
                      log.read_text(), 10, what="the access log")
    assert text.count('"client":"127.0.0.2"') == 2 and text.count('"client":"127.0.0.3"') == 2
    assert upstream_requests(t) == 1


def test_a_fleet_fills_guarded_routes_from_the_upstream_not_from_peers(rgw, bucket, make_tuskd,
                                                                       tmp):
    """The owner of an object would be asked by an edge, not by the client: guarded routes never
    fill through it (public ones beside them still do)."""
    b = bucket()
    names = [f"obj{i}.img" for i in range(8)]
    for n in names:
        put(rgw, b, n, BODY + n.encode())
    tokens = write_secret(tmp / "tokens", TOKENS[0] + "\n")
    edges = {}
    for i in (1, 2):
        t = make_tuskd(b, start=False, name=f"edge{i}",
                       routes=[route(b, auth="token", auth_token_file=tokens),
                               route(b, "/public/")])
        edges[f"edge{i}"] = t
    members = {name: t.url for name, t in edges.items()}
    for name, t in edges.items():
        t.config["peers"] = {"self": name, "members": members}
        t.start()
    one = edges["edge1"]
    for n in names:
        r = one.get("/images/" + n, headers={"Authorization": f"Bearer {TOKENS[0]}"})
        assert (r.status_code, r.content) == (200, BODY + n.encode())
    assert one.metric("tusk_peer_requests_total") == 0
    assert one.metric("tusk_upstream_requests_total") == len(names)
    assert edges["edge2"].metric("tusk_requests_total") == 0
    for n in names:  # the public route still asks the owner (edge2 owns some of these)
        put(rgw, b, "pub-" + n, b"public")
        assert one.get("/public/pub-" + n).status_code == 200
    assert one.metric("tusk_peer_requests_total") > 0


def test_a_raw_fragment_cannot_turn_a_signed_key_into_another(presigned_edge, rgw):
    """A URL signed for key 'a#x' ('/images/a%23x') resent with a raw '#' would route to key 'a'
    if the path were cut there: a target with a raw '#' is refused."""
    from util import raw_request
    t = presigned_edge
    bucket = t.config["routes"][0]["bucket"]
    put(rgw, bucket, "a", b"the other object")
    url = presign(presigner(t.url, "CLIENTKEY1", KEYS["CLIENTKEY1"]), key="a#x")
    target = url[len(t.url):]
    assert target.startswith("/images/a%23x?")
    raw = target.replace("%23", "#", 1)
    status, _, body = raw_request(
        t.port, f"GET {raw} HTTP/1.1\r\nHost: 127.0.0.1:{t.port}\r\nConnection: close\r\n\r\n"
        .encode())
    assert status == 400 and b"fragment" in body
    assert upstream_requests(t) == 0


def test_a_query_key_route_never_asks_s3_for_another_operation(rgw, bucket, make_tuskd):
    """tusk signs with its own credentials: ?acl, ?tagging and the like would read what the
    route never meant to expose. Parameters that shape the read itself are forwarded."""
    b = bucket()
    put(rgw, b, "x.img", BODY)
    t = make_tuskd(b, routes=[route(b, query="key")])
    for q in ("acl", "tagging", "torrent", "uploadId=1", "retention", "legal-hold", "versions"):
        r = t.get("/images/x.img?" + q)
        assert r.status_code == 400 and "another operation" in r.text, q
    assert upstream_requests(t) == 0
    r = t.get("/images/x.img?response-content-type=text%2Fplain")
    assert (r.status_code, r.headers["Content-Type"], r.content) == (200, "text/plain", BODY)
