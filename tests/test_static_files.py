"""Production static files: daphne alone, DEBUG off, after ``collectstatic`` — with CSS.

The portal runs with the production settings module (not the test one), as the systemd
unit in deploy/ starts it: behind a TLS proxy (``--proxy-headers``; the request says
it came over HTTPS), so whatever the security settings do with plain HTTP does not
matter here.
"""

import re
import urllib.request

import pytest

from tests import production

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def get(url: str, **headers) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https", **headers})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


@pytest.fixture
def production_portal(tmp_path):
    env = production.environ(tmp_path)
    production.collectstatic(env)
    with production.daphne(env) as base:
        yield base


def test_pages_get_their_css_and_javascript_with_debug_off(production_portal):
    status, _headers, page = get(production_portal + "/accounts/login/")
    assert status == 200
    html = page.decode()
    (css,) = re.findall(r'href="(/static/css/fleetgate\.[0-9a-f]{12}\.css)"', html)
    (js,) = re.findall(r'src="(/static/js/fleetgate\.[0-9a-f]{12}\.js)"', html)

    status, headers, body = get(production_portal + css)
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    source = (production.ROOT / "static/css/fleetgate.css").read_bytes()
    assert body.split(b"\n", 1)[0] == source.split(b"\n", 1)[0] and len(body) > 1000
    # A name with the content's hash never changes meaning: cached for good.
    assert "immutable" in headers["Cache-Control"]

    status, headers, zipped = get(production_portal + css, **{"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip" and len(zipped) < len(body)

    status, headers, _body = get(production_portal + js)
    assert status == 200 and "javascript" in headers["Content-Type"]
