"""The image endpoint gateways download from: bearer tokens, Range requests, one read,
no writes, and streaming that never holds the image (WSGI and ASGI alike)."""

import asyncio
import hashlib
import time
from datetime import timedelta

import pytest
from django.core.files.storage import storages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from firmware import tokens
from firmware.views.download import FileRange, RangeResponse, parse_range
from tests.factories import make_firmware_image, make_organization

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("firmware_storage")]

PAYLOAD = bytes(range(256)) * 2000  # 512,000 bytes: several 256 KiB chunks
OP = "9f86d081884c7d659a2feaa0c55ad015-0"


@pytest.fixture
def image():
    return make_firmware_image(make_organization(), "2.0.0", payload=PAYLOAD)


@pytest.fixture
def data(image):
    with storages["firmware"].open(image.file.name) as f:
        return f.read()


def get(client, image, token=None, **headers):
    url = reverse("firmware:download", args=[image.pk])
    token = tokens.issue(image.pk, OP) if token is None else token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(url, headers=headers)


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_whole_image_with_one_read_and_no_write(client, image, data):
    with CaptureQueriesContext(connection) as queries:
        response = get(client, image)
        content = body(response)
    assert response.status_code == 200 and content == data
    assert response["Content-Length"] == str(len(data)) and response["Accept-Ranges"] == "bytes"
    assert response["ETag"] == f'"{image.sha256}"'
    assert hashlib.sha256(content).hexdigest() == image.sha256
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT"]


def test_a_cut_download_resumes_as_often_as_it_is_cut(client, image, data):
    """Four cuts: the gateway asks for the rest each time, and gets exactly the rest."""
    response = get(client, image)
    assert response.status_code == 200
    received = body(response)[:1000]
    for cut in (150_000, 300_001, len(data) - 1):
        response = get(client, image, Range=f"bytes={len(received)}-")
        assert response.status_code == 206
        received += body(response)[: cut - len(received)]
    response = get(client, image, Range=f"bytes={len(received)}-")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {len(received)}-{len(data) - 1}/{len(data)}"
    received += body(response)
    assert received == data


SIZE = len(PAYLOAD) + 64  # the image: a 64-byte header and the payload


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=511000-", 511000, SIZE - 1),
        ("bytes=-1000", SIZE - 1000, SIZE - 1),
        ("bytes=500000-999999999", 500000, SIZE - 1),
        ("Bytes = 10 - 20", 10, 20),
    ],
)
def test_single_ranges(client, image, data, header, first, last):
    assert len(data) == SIZE
    response = get(client, image, Range=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert response["Content-Length"] == str(last - first + 1)
    assert body(response) == data[first : last + 1]


@pytest.mark.parametrize(
    "header", [f"bytes={SIZE}-", "bytes=600000-700000", "bytes=200-100", "bytes=-0", "bytes=x-"]
)
def test_unsatisfiable_or_malformed_ranges_are_416(client, image, data, header):
    response = get(client, image, Range=header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("header", ["items=0-10", "bytes=0-10,20-30"])
def test_other_units_and_several_ranges_get_the_whole_image(client, image, data, header):
    response = get(client, image, Range=header)
    assert response.status_code == 200 and body(response) == data


def test_if_range_that_no_longer_matches_gets_the_whole_image(client, image, data):
    response = get(client, image, Range="bytes=100-", **{"If-Range": '"another"'})
    assert response.status_code == 200 and body(response) == data
    response = get(client, image, Range="bytes=100-", **{"If-Range": f'"{image.sha256}"'})
    assert response.status_code == 206 and body(response) == data[100:]


def test_refusals(client, image):
    other = make_firmware_image(image.organization, "3.0.0", payload=b"other")
    expired = tokens.issue(image.pk, OP, timezone.now() - timedelta(seconds=1))
    forged = tokens.issue(image.pk, OP)[:-2] + "AA"
    cases = [
        ("", 401),
        ("garbage", 401),
        (forged, 401),
        (expired, 410),
        (tokens.issue(other.pk, OP), 403),
    ]
    for token, status in cases:
        with CaptureQueriesContext(connection) as queries:
            response = get(client, image, token=token)
        assert response.status_code == status, token
        assert queries.captured_queries == []  # refused before any database work
    assert get(client, image, token="")["WWW-Authenticate"].startswith("Bearer ")
    basic = client.get(
        reverse("firmware:download", args=[image.pk]),
        headers={"Authorization": f"Basic {tokens.issue(image.pk, OP)}"},
    )
    assert basic.status_code == 401


def test_a_token_of_another_salt_or_key_does_not_pass(client, image, settings):
    from django.core import signing

    token = signing.Signer(salt="something else").sign(f"{image.pk}.{OP}.{int(time.time()) + 60}")
    assert get(client, image, token=token).status_code == 401
    good = tokens.issue(image.pk, OP)
    settings.SECRET_KEY = "another secret key, after a leak"
    assert get(client, image, token=good).status_code == 401


def test_a_rotated_secret_key_still_honours_tokens_issued_before(client, image, settings):
    good = tokens.issue(image.pk, OP)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the new secret key, rotated"
    response = get(client, image, token=good)
    assert response.status_code == 200 and body(response)


def test_deleted_image_or_missing_file_is_404(client, image):
    token = tokens.issue(image.pk, OP)
    storages["firmware"].delete(image.file.name)
    assert get(client, image, token=token).status_code == 404
    pk = image.pk
    image.delete()
    image.pk = pk
    assert get(client, image, token=token).status_code == 404


def test_tokens_name_one_operation_and_fit_the_protocol():
    token = tokens.issue(17, OP)
    grant = tokens.verify(token)
    assert (grant.image_id, grant.op) == (17, OP) and len(token) < 512
    with pytest.raises(tokens.TokenExpired):
        tokens.verify(token, now=grant.expires)
    with pytest.raises(ValueError):
        tokens.issue(17, "a.b")


def test_load_image_params_are_what_the_protocol_asks(image, settings):
    from gateway import schema

    settings.FIRMWARE = {**settings.FIRMWARE, "PUBLIC_URL": "https://portal.example"}
    params = tokens.load_image_params(image, OP)
    assert params["url"] == f"https://portal.example/firmware/images/{image.pk}/download/"
    assert (params["sha256"], params["size"], params["version"]) == (
        image.sha256,
        image.size,
        "2.0.0",
    )
    schema.operation({"op": OP, "kind": "load_image", "device": {"serial": "S"}, "params": params})


def test_parse_range_edges():
    assert parse_range("bytes=0-", 10) == (0, 9)
    assert parse_range("bytes=-20", 10) == (0, 9)
    assert parse_range("none", 10) is None


# -- streaming: chunks, never the whole image, under WSGI and ASGI ----------------------


def test_wsgi_streams_in_chunks(client, image, data):
    response = get(client, image)
    chunks = list(response.streaming_content)
    assert len(chunks) == 2 and max(map(len, chunks)) == 256 * 1024
    assert b"".join(chunks) == data


def test_asgi_streams_asynchronously_without_buffering(image, data):
    """Under ASGI Django reads a synchronous iterator into memory whole (with a warning,
    an error in this suite); ours hands the server an async iterator instead."""
    stream = FileRange(image.file.name, 100, len(data) - 100)
    stream.open()
    response = RangeResponse(stream, status=206)

    async def consume():
        sizes = []
        async for part in aiter(response):
            sizes.append(len(part))
        return sizes

    sizes = asyncio.run(consume())
    response.close()
    assert sum(sizes) == len(data) - 100 and max(sizes) == 256 * 1024
    assert stream.file.closed


@pytest.mark.django_db(transaction=True)
def test_asgi_application_serves_a_range(image, data):
    """Through Django's real ASGI handler (what daphne runs), end to end."""
    from django.core.handlers.asgi import ASGIHandler

    token = tokens.issue(image.pk, OP)
    scope = {
        "type": "http",
        "method": "GET",
        "path": reverse("firmware:download", args=[image.pk]),
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"range", b"bytes=1000-"),
            (b"host", b"testserver"),
        ],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
    }
    sent = []

    async def run():
        requests = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive():
            if requests:
                return requests.pop()
            await asyncio.Event().wait()  # no disconnect: the handler cancels this wait

        async def send(message):
            sent.append(message)

        await ASGIHandler()(scope, receive, send)

    asyncio.run(run())
    start = sent[0]
    headers = dict(start["headers"])
    assert start["status"] == 206
    assert headers[b"Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}".encode()
    content = b"".join(m.get("body", b"") for m in sent[1:])
    assert content == data[1000:]
    assert len([m for m in sent[1:] if m.get("body")]) >= 2  # sent in chunks
