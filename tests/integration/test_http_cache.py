"""HTTP caching as RFC 9111 says, end to end: tuskd in front of a scripted origin
(tests/integration/origin.py) that sends the headers S3 cannot. One test per rule; the names in
parentheses are the ids of the matching cases of the public cache-tests.fyi suite. The pure
decisions have their table tests in tests/proxy/freshness_test.cc and decide_test.cc."""

from __future__ import annotations

import concurrent.futures
import email.utils
import time

import pytest
import requests

from origin import Origin

KEY = "obj"
UP = "/b/" + KEY  # the upstream path of /o/obj (signature none: path-style /bucket/key)


def http_date(offset: float = 0) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


@pytest.fixture
def origin():
    o = Origin().start()
    yield o
    o.stop()


ADMIN_TOKEN = "admin-token-of-the-http-cache-tests"


@pytest.fixture
def edge(make_tuskd, origin):
    """Factory: edge(**route_options) -> a tuskd whose route /o/ maps to the origin's bucket b
    (its admin API takes ADMIN_TOKEN)."""

    def make(upstream=None, **route):
        r = {"prefix": "/o/", "upstream": "rgw", "bucket": "b", "ttl": "1h", "prefetch": "whole"}
        r.update(route)
        t = make_tuskd(endpoint=origin.url, user=None, routes=[r], upstream=upstream, start=False)
        token = t.workdir / "admin.token"
        token.write_text(ADMIN_TOKEN + "\n")
        token.chmod(0o600)
        t.config["admin"]["token_file"] = str(token)
        return t.start()

    return make


def admin(t, method, path, **kw):
    return requests.request(method, t.admin_url + path, timeout=30,
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kw)


def get(t, headers=None, path="/o/" + KEY):
    return requests.get(t.url + path, headers=headers or {}, timeout=10)


# ---------------------------------------------------------------- freshness and age


def test_max_age_is_fresh_then_stale_and_age_counts_against_it(edge, origin):
    origin.set(UP, headers=[("Cache-Control", "max-age=3"), ("Age", "1"), ("ETag", '"v1"')],
               body=b"one", not_modified=[("ETag", '"v1"')])
    t = edge()
    r = get(t)
    assert (r.status_code, r.content, r.headers["X-Cache"]) == (200, b"one", "MISS")
    assert int(r.headers["Age"]) >= 1  # the origin's Age, relayed (freshness-max-age-age)
    r = get(t)
    assert r.headers["X-Cache"] == "HIT" and int(r.headers["Age"]) >= 1
    assert origin.count(UP) == 1
    time.sleep(2.2)  # 1 s of Age + 2.2 s resident > max-age=3
    r = get(t)
    assert r.headers["X-Cache"] == "REVALIDATED" and r.content == b"one"
    assert origin.seen(UP)[-1].header("If-None-Match") == '"v1"'


@pytest.mark.parametrize("age", ["7200", "2147483648", "7200, 0"])
def test_an_age_beyond_max_age_is_never_fresh(edge, origin, age):
    # freshness-max-age-age, age-parse-large, age-parse-suffix
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("Age", age)], body=b"x")
    t = edge()
    get(t)
    assert get(t).headers["X-Cache"] != "HIT"
    assert origin.count(UP) == 2


@pytest.mark.parametrize("age", ["abc", "-7200", "7200.0", "0, 7200"])
def test_a_malformed_age_is_ignored(edge, origin, age):
    # age-parse-nonnumeric, -negative, -float, -prefix
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("Age", age)], body=b"x")
    t = edge()
    get(t)
    assert get(t).headers["X-Cache"] == "HIT"
    assert origin.count(UP) == 1


@pytest.mark.parametrize("headers", [
    [("Cache-Control", "max-age=0")],                                       # freshness-max-age-0
    [("Cache-Control", "max-age=-3600")],                             # freshness-max-age-negative
    [("Cache-Control", "max-age='3600'")],                       # freshness-max-age-single-quoted
    [("Cache-Control", 'extension="max-age=3600", max-age=0')],  # freshness-max-age-ignore-quoted
    [("Cache-Control", "max-age=0"), ("Expires", http_date(3600))],  # max-age-0-expires
    [("Expires", "0")],                                                  # freshness-expires-invalid
    [("Date", http_date()), ("Expires", http_date(3600).replace("GMT", "UTC"))],  # -invalid-utc
    [("Expires", http_date(-60))],                                          # freshness-expires-past
    [("Cache-Control", "max-age=3600, s-maxage=0")],        # s-maxage beats max-age (shared cache)
    [("Cache-Control", "max-age=3600"), ("Cache-Control", "s-maxage=0")],  # …-multiple
])
def test_a_response_that_is_not_fresh_is_not_reused(edge, origin, headers):
    origin.set(UP, headers=headers, body=b"x")
    t = edge()
    get(t)
    assert get(t).headers["X-Cache"] != "HIT"
    assert origin.count(UP) == 2


@pytest.mark.parametrize("headers", [
    [("Cache-Control", "max-age=003600")],               # freshness-max-age-leading-zero
    [("Cache-Control", 'MAX-AGE="3600"')],
    [("Cache-Control", "s-maxage=3600")],                # freshness-s-maxage-shared
    [("Cache-Control", "max-age=0, s-maxage=3600")],
    [("Date", http_date()), ("Expires", http_date(3600))],
    [],                                                  # no freshness: the route's ttl (heuristic)
])
def test_a_fresh_response_is_reused(edge, origin, headers):
    origin.set(UP, headers=headers, body=b"x")
    t = edge()
    get(t)
    assert get(t).headers["X-Cache"] == "HIT"
    assert origin.count(UP) == 1


# ---------------------------------------------------------------- storing

@pytest.mark.parametrize("cc", ["no-store", "No-StOrE", "private, max-age=3600",
                                "max-age=3600, no-store"])
def test_no_store_and_private_are_never_stored(edge, origin, cc):
    origin.set(UP, headers=[("Cache-Control", cc), ("ETag", '"e"')], body=b"secret")
    t = edge()
    for _ in range(2):
        r = get(t)
        assert r.content == b"secret" and r.headers["X-Cache"] == "PASS"
    assert origin.count(UP) == 2
    assert all(s.header("If-None-Match") is None for s in origin.seen(UP))


def test_no_cache_is_stored_and_validated_before_every_use(edge, origin):
    # cc-resp-no-cache, cc-resp-no-cache-revalidate
    origin.set(UP, headers=[("Cache-Control", "max-age=10000, No-CaChE"), ("ETag", '"n"')],
               body=b"body", not_modified=[("ETag", '"n"')])
    t = edge()
    assert get(t).headers["X-Cache"] == "MISS"
    for _ in range(2):
        r = get(t)
        assert r.headers["X-Cache"] == "REVALIDATED" and r.content == b"body"
    assert origin.count(UP) == 3
    assert [s.header("If-None-Match") for s in origin.seen(UP)] == [None, '"n"', '"n"']


def test_qualified_no_cache_stores_the_response_without_the_fields_it_names(edge, origin):
    origin.set(UP, headers=[("Cache-Control", 'max-age=3600, no-cache="Set-Cookie, X-Private"'),
                            ("Set-Cookie", "session=1"), ("X-Private", "p"), ("X-Public", "q")],
               body=b"x")
    t = edge()
    assert get(t).headers["X-Public"] == "q"
    r = get(t)
    assert r.headers["X-Cache"] == "HIT" and r.headers["X-Public"] == "q"
    assert "Set-Cookie" not in r.headers and "X-Private" not in r.headers


def test_without_validators_none_is_invented_and_no_conditional_is_sent(edge, origin):
    origin.set(UP, headers=[("Cache-Control", "max-age=0")], body=b"plain")
    t = edge()
    for _ in range(2):
        r = get(t)
        assert r.content == b"plain"
        assert "ETag" not in r.headers and "Last-Modified" not in r.headers
    for s in origin.seen(UP):
        assert s.header("If-None-Match") is None and s.header("If-Modified-Since") is None


def test_end_to_end_headers_are_stored_and_hop_by_hop_ones_are_not(edge, origin):
    # headers-store-*, headers-omit-headers-listed-in-Connection
    date = http_date(-5)
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("Date", date),
                            ("Connection", "keep-alive, X-Hop, X-Other"), ("X-Hop", "1"),
                            ("X-Other", "2"), ("Keep-Alive", "timeout=30"), ("X-E2E", "3"),
                            ("Set-Cookie", "a=c"), ("Test-Header", "one"), ("Test-Header", "two"),
                            ("Content-Location", "/bar"), ("X-Frame-Options", "deny"),
                            ("Content-Type", "text/plain;charset=utf-8")],
               body=b"hello")
    t = edge()
    for expect in ["MISS", "HIT"]:
        r = get(t)
        assert r.headers["X-Cache"] == expect
        assert "X-Hop" not in r.headers and "X-Other" not in r.headers
        assert "Keep-Alive" not in r.headers
        assert r.headers["X-E2E"] == "3" and r.headers["Set-Cookie"] == "a=c"
        assert r.headers["Test-Header"] == "one, two"  # both lines, in order
        assert r.headers["Content-Location"] == "/bar"
        assert r.headers["X-Frame-Options"] == "deny"
        assert r.headers["Content-Type"] == "text/plain;charset=utf-8"
        assert r.headers["Date"] == date  # the origin's Date is kept; Age says how old
        assert int(r.headers["Age"]) >= 5


def test_a_range_of_a_stored_response_carries_its_stored_headers(edge, origin):
    # partial-use-stored-headers
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("A", "1")], body=b"01234567890")
    t = edge()
    get(t)
    r = get(t, {"Range": "bytes=0-1"})
    assert (r.status_code, r.content, r.headers["X-Cache"]) == (206, b"01", "HIT")
    assert r.headers["A"] == "1" and r.headers["Content-Range"] == "bytes 0-1/11"


# ---------------------------------------------------------------- conditionals and 304s

def test_a_304_updates_the_stored_headers_but_not_the_framing(edge, origin):
    # 304-etag-update-response-Test-Header, -Cache-Control, -Content-Length
    origin.set(UP, headers=[("Cache-Control", "max-age=1"), ("ETag", '"u"'),
                            ("Test-Header", "A"), ("X-Kept", "k"), ("Content-Type", "text/a"),
                            ("Content-MD5", "md5-of-the-body")], body=b"0123456789abcdef",
               not_modified=[("ETag", '"u"'), ("Test-Header", "B"),
                             ("Cache-Control", "max-age=3600"), ("Content-Length", "10"),
                             ("Content-Type", "text/b"), ("Content-MD5", "other")])
    t = edge()
    assert get(t).headers["Test-Header"] == "A"
    time.sleep(1.2)
    r = get(t)
    assert r.headers["X-Cache"] == "REVALIDATED"
    assert r.headers["Test-Header"] == "B" and r.headers["X-Kept"] == "k"
    assert r.headers["Content-Length"] == "16" and r.content == b"0123456789abcdef"
    assert r.headers["Content-Type"] == "text/b"  # updated (304-etag-update-response-Content-Type)
    assert r.headers["Content-MD5"] == "md5-of-the-body"  # describes the body: kept
    r = get(t)  # fresh by the Cache-Control the 304 brought
    assert r.headers["X-Cache"] == "HIT" and r.headers["Test-Header"] == "B"
    assert r.headers["Cache-Control"] == "max-age=3600"
    assert origin.count(UP) == 2


def test_if_none_match_takes_precedence_over_if_modified_since(edge, origin):
    # conditional-etag-precedence, conditional-304-etag
    lm = http_date(-5000)
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("ETag", '"abcdef"'),
                            ("Last-Modified", lm)], body=b"x")
    t = edge()
    get(t)
    r = get(t, {"If-None-Match": '"abcdef"', "If-Modified-Since": http_date(-6000)})
    assert r.status_code == 304 and r.headers["ETag"] == '"abcdef"'
    r = get(t, {"If-None-Match": '"other"', "If-Modified-Since": http_date(-1)})
    assert r.status_code == 200  # the ETag does not match: If-Modified-Since is not looked at


def test_revalidation_prefers_the_etag_over_the_date(edge, origin):
    lm = http_date(-5000)
    origin.set(UP, headers=[("Cache-Control", "max-age=0"), ("ETag", '"e1"'),
                            ("Last-Modified", lm)], body=b"x", not_modified=[("ETag", '"e1"')])
    t = edge()
    get(t)
    assert get(t).headers["X-Cache"] == "REVALIDATED"
    s = origin.seen(UP)[-1]
    assert s.header("If-None-Match") == '"e1"' and s.header("If-Modified-Since") is None


def test_a_last_modified_alone_is_revalidated_with_if_modified_since(edge, origin):
    lm = http_date(-5000)
    origin.set(UP, headers=[("Cache-Control", "max-age=0"), ("Last-Modified", lm)], body=b"x",
               not_modified=[("Last-Modified", lm)])
    t = edge()
    get(t)
    assert get(t).headers["X-Cache"] == "REVALIDATED"
    assert origin.seen(UP)[-1].header("If-Modified-Since") == lm


# ---------------------------------------------------------------- stale

def stale_setup(edge, origin, cc, grace="0s"):
    origin.set(UP, headers=[("Cache-Control", cc), ("ETag", '"s"')], body=b"stale body",
               not_modified=[("ETag", '"s"')])
    t = edge(grace=grace)
    assert get(t).headers["X-Cache"] == "MISS"
    time.sleep(1.2)
    origin.set(UP, fail="close")
    return t


def test_grace_serves_stale_when_the_upstream_fails(edge, origin):
    t = stale_setup(edge, origin, "max-age=1", grace="60s")
    r = get(t)
    assert (r.status_code, r.content, r.headers["X-Cache"]) == (200, b"stale body", "STALE")


@pytest.mark.parametrize("cc", ["max-age=1, must-revalidate", "max-age=1, proxy-revalidate",
                                "s-maxage=1", "max-age=1, no-cache",
                                "max-age=1, must-revalidate, stale-if-error=60"])
def test_these_responses_are_never_served_stale(edge, origin, cc):
    # stale-close-must-revalidate, -proxy-revalidate, -s-maxage, -no-cache
    t = stale_setup(edge, origin, cc, grace="60s")
    r = get(t)
    assert r.status_code >= 500 and r.content != b"stale body"


def test_stale_if_error_serves_stale_on_failure_without_route_grace(edge, origin):
    t = stale_setup(edge, origin, "max-age=1, stale-if-error=60")
    r = get(t)
    assert (r.status_code, r.content, r.headers["X-Cache"]) == (200, b"stale body", "STALE")
    origin.set(UP, fail=503)
    r = get(t)
    assert (r.status_code, r.content, r.headers["X-Cache"]) == (200, b"stale body", "STALE")


def test_stale_if_error_ends(edge, origin):
    t = stale_setup(edge, origin, "max-age=1, stale-if-error=1")
    time.sleep(1.0)  # 2.2 s past the response: beyond max-age + stale-if-error
    assert get(t).status_code >= 500


def test_stale_while_revalidate_serves_at_once_and_revalidates_once_behind(edge, origin):
    origin.set(UP, headers=[("Cache-Control", "max-age=1, stale-while-revalidate=60"),
                            ("ETag", '"v1"')], body=b"version 1")
    t = edge()
    assert get(t).content == b"version 1"
    time.sleep(1.2)
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("ETag", '"v2"')],
               body=b"version 2")
    r = get(t)
    assert (r.content, r.headers["X-Cache"]) == (b"version 1", "STALE")
    # The background revalidation (a conditional GET with the stored ETag) replaces the entry.
    deadline = time.monotonic() + 10
    while get(t).content != b"version 2":
        assert time.monotonic() < deadline, "the background revalidation never landed"
        time.sleep(0.1)
    assert origin.seen(UP)[1].header("If-None-Match") == '"v1"'
    assert get(t).headers["X-Cache"] == "HIT"
    assert origin.count(UP) == 2  # one revalidation, however many clients asked meanwhile


def test_past_stale_while_revalidate_the_client_waits_for_the_origin(edge, origin):
    origin.set(UP, headers=[("Cache-Control", "max-age=1, stale-while-revalidate=1"),
                            ("ETag", '"v1"')], body=b"version 1")
    t = edge()
    get(t)
    time.sleep(2.2)
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("ETag", '"v2"')],
               body=b"version 2")
    r = get(t)
    assert (r.content, r.headers["X-Cache"]) == (b"version 2", "MISS")


# ---------------------------------------------------------------- plumbing

@pytest.mark.parametrize("status", [203, 204, 299, 301, 400, 403, 404, 410, 451, 499, 500, 503,
                                    599])
def test_an_unsigned_upstreams_statuses_pass_through_as_they_are(edge, origin, status):
    body = b"" if status == 204 else b"<p>origin says %d</p>" % status
    origin.set(UP, status=status, body=body,
               headers=[("Content-Type", "text/html"), ("X-Origin", "yes"),
                        ("Location", "/elsewhere"), ("Connection", "X-Hop"), ("X-Hop", "1"),
                        ("ETag", '"p"'), ("Last-Modified", http_date(-100))])
    t = edge(upstream={"retries": 0})  # (a 5xx is retried `retries` times before it is passed)
    r = requests.get(t.url + "/o/" + KEY, timeout=10, allow_redirects=False)
    assert r.status_code == status
    assert r.content == body
    assert r.headers["X-Origin"] == "yes" and r.headers["Location"] == "/elsewhere"
    assert r.headers["ETag"] == '"p"' and "Last-Modified" in r.headers
    assert "X-Hop" not in r.headers
    if status != 204:
        assert r.headers["Content-Type"] == "text/html"
    assert r.headers["X-Cache"] == "PASS"
    assert "Date" in r.headers
    # Never stored: the route's ttl (heuristic freshness) is for 200 objects, never 403 or 5xx.
    requests.get(t.url + "/o/" + KEY, timeout=10, allow_redirects=False)
    assert origin.count(UP) == 2


def test_an_unsigned_upstreams_huge_error_body_is_not_passed_on(edge, origin):
    origin.set(UP, status=500, body=b"e" * (70 * 1024))
    t = edge()
    r = get(t)
    assert r.status_code == 502 and b"over 64 KiB" in r.content


def test_forward_headers_reach_the_upstream_on_misses_and_revalidations(edge, origin):
    origin.set(UP, headers=[("Cache-Control", "max-age=0"), ("ETag", '"f"')], body=b"x",
               not_modified=[("ETag", '"f"')])
    t = edge(upstream={"forward_headers": ["X-Request-Id", "traceparent"]})
    get(t, {"X-Request-Id": "r1", "traceparent": "00-aa-bb-01", "Cookie": "c=1",
            "Authorization": "Bearer secret", "X-Other": "no"})
    get(t, {"X-Request-Id": "r2"})
    get(t, {"X-Request-Id": "r3", "traceparent": "00-cc-dd-01", "Connection": "traceparent"})
    first, second, third = origin.seen(UP)
    assert first.header("X-Request-Id") == "r1" and first.header("traceparent") == "00-aa-bb-01"
    for never in ["Cookie", "X-Other"]:
        assert first.header(never) is None
    assert first.header("Authorization") is None  # signature none: no Authorization at all
    assert second.header("X-Request-Id") == "r2" and second.header("If-None-Match") == '"f"'
    # A field the client's Connection names is hop-by-hop: not forwarded.
    assert third.header("X-Request-Id") == "r3" and third.header("traceparent") is None


def test_a_route_with_query_key_stores_each_query_apart(edge, origin):
    origin.set(UP, headers=[("Cache-Control", "max-age=3600")], body=b"one")
    t = edge(query="key")
    assert get(t, path="/o/obj?v=1&w=a%20b").content == b"one"
    assert origin.seen()[-1].path == "/b/obj?v=1&w=a%20b"  # forwarded (seen() keeps the query)
    origin.set(UP, headers=[("Cache-Control", "max-age=3600")], body=b"two")
    assert get(t, path="/o/obj?v=2").content == b"two"
    r = get(t, path="/o/obj?v=1&w=a%20b")
    assert (r.content, r.headers["X-Cache"]) == (b"one", "HIT")
    # (A malformed query is a 400: tests/proxy/router_test.cc; requests would re-encode it.)


def test_a_route_that_ignores_the_query_stores_one_copy(edge, origin):
    origin.set(UP, headers=[("Cache-Control", "max-age=3600")], body=b"one")
    t = edge()
    get(t, path="/o/obj?v=1")
    r = get(t, path="/o/obj?v=2")
    assert (r.content, r.headers["X-Cache"]) == (b"one", "HIT")
    assert [s.path for s in origin.seen(UP)] == ["/b/obj"]


def test_policy_client_no_cache_and_authorization_do_not_bypass_the_cache(edge, origin):
    """README "HTTP behaviour", policy choices: a client cannot make the edge refetch, and its
    Authorization is neither forwarded nor a reason to keep the answer private."""
    origin.set(UP, headers=[("Cache-Control", "max-age=3600")], body=b"shared")
    t = edge()
    get(t)
    r = get(t, {"Cache-Control": "no-cache, max-age=0", "Pragma": "no-cache",
                "Authorization": "Bearer client-token"})
    assert (r.content, r.headers["X-Cache"]) == (b"shared", "HIT")
    assert origin.count(UP) == 1
    assert origin.seen(UP)[0].header("Authorization") is None


# ---------------------------------------------------------------- Vary

def vary_edge(edge, origin, vary="Foo", **script):
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("Vary", vary), ("ETag", '"v"')],
               body=b"x", echo="Foo", **script)
    return edge(upstream={"forward_headers": ["Foo", "Bar"]})


def test_vary_stores_one_copy_per_variant(edge, origin):
    # vary-match, vary-no-match, vary-omit-stored, vary-omit
    t = vary_edge(edge, origin)
    # The first varying answer teaches the edge which headers matter, and is stored as the
    # variant of the request that brought it.
    assert [get(t, {"Foo": "1"}).headers["X-Cache"] for _ in range(2)] == ["MISS", "HIT"]
    # An empty Foo is not an absent one: each is a variant of its own.
    for foo, body, cache in [("2", b"x:2", "MISS"), (None, b"x:", "MISS"), ("1", b"x:1", "HIT"),
                             ("", b"x:", "MISS"), ("2", b"x:2", "HIT"), (None, b"x:", "HIT"),
                             ("", b"x:", "HIT")]:
        r = get(t, {"Foo": foo} if foo is not None else {})
        assert (r.content, r.headers["X-Cache"]) == (body, cache), foo
    assert get(t, {"foo": "1", "Bar": "other"}).headers["X-Cache"] == "HIT"  # Bar is not named
    assert origin.count(UP) == 4  # 1, 2, absent, empty


def test_two_header_lines_are_one_variant(edge, origin):
    t = vary_edge(edge, origin)
    get(t, {"Foo": "1, 2"})
    get(t, {"Foo": "1, 2"})
    raw = get_raw(t, [("Foo", "1"), ("Foo", "2")])
    assert b"X-Cache: HIT" in raw


def get_raw(t, headers):
    """One GET over a plain socket, so repeated header lines reach tuskd as they are."""
    import socket
    host, port = t.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port.rstrip("/"))), timeout=10) as s:
        lines = [f"GET /o/{KEY} HTTP/1.1", f"Host: {host}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("vary", ["*", "*, *", "Foo, *", ", *"])
def test_vary_star_is_never_reused(edge, origin, vary):
    # vary-star, vary-syntax-star-star, vary-syntax-foo-star, vary-syntax-empty-star
    t = vary_edge(edge, origin, vary=vary)
    for _ in range(3):
        assert get(t, {"Foo": "1"}).headers["X-Cache"] == "PASS"
    assert origin.count(UP) == 3


def test_vary_star_split_over_lines_is_never_reused(edge, origin):
    # vary-syntax-star-star-lines, vary-syntax-empty-star-lines
    origin.set(UP, headers=[("Cache-Control", "max-age=3600"), ("Vary", ""), ("Vary", "*")],
               body=b"x")
    t = edge()
    for _ in range(3):
        assert get(t).headers["X-Cache"] == "PASS"
    assert origin.count(UP) == 3


def test_clients_of_other_variants_do_not_share_a_varying_answer(edge, origin):
    t = vary_edge(edge, origin, delay=0.6)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        one = pool.submit(get, t, {"Foo": "1"})
        time.sleep(0.2)  # the second joins the first's fill while its answer is on its way
        two = pool.submit(get, t, {"Foo": "2"})
        assert one.result().content == b"x:1"
        assert two.result().content == b"x:2"


def test_a_variant_is_revalidated_with_its_own_request_headers(edge, origin):
    # conditional-etag-vary-headers
    t = vary_edge(edge, origin)
    origin.set(UP, headers=[("Cache-Control", "max-age=1"), ("Vary", "Foo"), ("ETag", '"v"')],
               body=b"x", echo="Foo", not_modified=[("ETag", '"v"')])
    assert get(t, {"Foo": "123"}).headers["X-Cache"] == "MISS"  # stored as its variant
    time.sleep(1.2)
    r = get(t, {"Foo": "123"})
    assert (r.headers["X-Cache"], r.content) == ("REVALIDATED", b"x:123")
    last = origin.seen(UP)[-1]
    assert last.header("If-None-Match") == '"v"' and last.header("Foo") == "123"


def test_variants_per_object_are_bounded(edge, origin):
    t = vary_edge(edge, origin)
    for i in range(32):
        get(t, {"Foo": str(i)})
        assert get(t, {"Foo": str(i)}).headers["X-Cache"] == "HIT"
    # The 33rd variant is served, never stored: a client cannot fill the cache with variants.
    for _ in range(2):
        r = get(t, {"Foo": "one-too-many"})
        assert (r.headers["X-Cache"], r.content) == ("PASS", b"x:one-too-many")


def test_purging_a_varying_object_purges_its_variants(edge, origin):
    t = vary_edge(edge, origin)
    for foo in ["1", "1", "2", "2"]:
        get(t, {"Foo": foo})
    assert get(t, {"Foo": "2"}).headers["X-Cache"] == "HIT"
    t.wait_fills_settled()  # every record published
    listed = admin(t, "GET", "/objects").json()["objects"]
    assert [o["path"] for o in listed] == ["/o/obj", "/o/obj"]  # two variants, one path
    assert admin(t, "DELETE", "/objects", params={"path": "/o/obj"}).json()["purged"] == 2
    assert get(t, {"Foo": "1"}).headers["X-Cache"] == "MISS"
    assert admin(t, "DELETE", "/objects", params={"prefix": "/o/"}).json()["purged"] == 1


def test_purging_by_path_with_a_query_purges_that_entry(edge, origin):
    origin.set(UP, headers=[("Cache-Control", "max-age=3600")], body=b"one")
    t = edge(query="key")
    get(t, path="/o/obj?v=1")
    get(t, path="/o/obj?v=2")
    t.wait_fills_settled()
    paths = sorted(o["path"] for o in admin(t, "GET", "/objects").json()["objects"])
    assert paths == ["/o/obj?v=1", "/o/obj?v=2"]
    assert admin(t, "DELETE", "/objects", params={"path": "/o/obj?v=1"}).json()["purged"] == 1
    assert get(t, path="/o/obj?v=1").headers["X-Cache"] == "MISS"
    assert get(t, path="/o/obj?v=2").headers["X-Cache"] == "HIT"
