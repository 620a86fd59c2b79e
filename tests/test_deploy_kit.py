"""deploy/ checked by the programs that will read it: systemd, nginx, Mosquitto, Redis, PostgreSQL.

Each file is used as shipped, with only what a machine fills in replaced (ports, paths,
certificates); a replacement that no longer finds its text fails the test, so the
files and these checks cannot drift apart. A program that is missing skips its test
with the reason (scripts/test.sh provides nginx: Debian's package unpacked under var/).
"""

import datetime
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests import production
from tests.factories import make_member, make_organization
from tests.gateway.portal_double import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def shipped(relative: str, replacements: dict[str, str]) -> str:
    """A file of deploy/ with each text replaced, each of which must be there."""
    text = (DEPLOY / relative).read_text()
    for old, new in replacements.items():
        assert old in text, f"{relative} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def wait_port(port: int, process: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# -- systemd ---------------------------------------------------------------------------


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    units = []
    for template, instance in [
        ("fleetgate-web@.service", "8001"),
        ("fleetgate-worker@.service", "1"),
        ("fleetgate-bridge@.service", "1"),
        ("fleetgate-reconciler@.service", "1"),
        ("fleetgate.target", None),
    ]:
        # The checkout stands in for /opt/fleetgate, so every ExecStart exists.
        text = (DEPLOY / "systemd" / template).read_text().replace("/opt/fleetgate", str(ROOT))
        name = template.replace("@.", f"@{instance}.") if instance else template
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    done = subprocess.run(
        [analyze, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "fleetgate" not in done.stderr, done.stderr


# -- nginx in front of daphne ----------------------------------------------------------


def nginx_binary() -> tuple[str, Path]:
    """nginx and its mime.types: the machine's, or Debian's unpacked by scripts/test.sh."""
    unpacked = ROOT / "var/nginx-root"
    if shutil.which("nginx"):
        return shutil.which("nginx"), Path("/etc/nginx/mime.types")
    if (unpacked / "usr/sbin/nginx").exists():
        return str(unpacked / "usr/sbin/nginx"), unpacked / "etc/nginx/mime.types"
    pytest.skip(
        "nginx is not available: scripts/test.sh unpacks Debian's, or apt-get install nginx"
    )


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetgate test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def behind_nginx(tmp_path):
    """The shipped site in front of one production daphne; yields what the test needs."""
    nginx, mime_types = nginx_binary()
    key = "k" + uuid.uuid4().hex * 2
    env = production.environ(tmp_path, secret_key=key)
    production.collectstatic(env)
    cert, private_key = self_signed(tmp_path)
    http_port, https_port = free_port(), free_port()
    with production.daphne(env, log=tmp_path / "daphne.log") as daphne_url:
        daphne_port = urllib.parse.urlsplit(daphne_url).port
        site = shipped(
            "nginx/fleetgate.conf",
            {
                "server 127.0.0.1:8001;\n    server 127.0.0.1:8002;": (
                    f"server 127.0.0.1:{daphne_port};"
                ),
                "listen 80;": f"listen 127.0.0.1:{http_port};",
                "listen [::]:80;\n": "",
                "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
                "listen [::]:443 ssl;\n": "",
                "/etc/letsencrypt/live/fleetgate.example.com/fullchain.pem": str(cert),
                "/etc/letsencrypt/live/fleetgate.example.com/privkey.pem": str(private_key),
                "/var/lib/fleetgate/staticfiles/": f"{tmp_path}/staticfiles/",
            },
        )
        (tmp_path / "site.conf").write_text(site)
        temp = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        main = "\n".join(
            [
                "daemon off;",
                "worker_processes 1;",
                f"pid {tmp_path}/nginx.pid;",
                f"error_log {tmp_path}/error.log;",
                # As root, workers would run as nobody and could not read the test's files.
                "user root;" if os.getuid() == 0 else "",
                "events { worker_connections 256; }",
                "http {",
                f"  include {mime_types};",
                "  default_type application/octet-stream;",
                "  access_log off;",
                *(f"  {kind}_temp_path {tmp_path / kind};" for kind in temp),
                f"  include {tmp_path}/site.conf;",
                "}",
            ]
        )
        (tmp_path / "nginx.conf").write_text(main)
        command = [nginx, "-p", f"{tmp_path}/", "-e", f"{tmp_path}/error.log"]
        command += ["-c", f"{tmp_path}/nginx.conf"]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        assert "test is successful" in checked.stderr
        server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            wait_port(https_port, server)
            context = ssl.create_default_context(cafile=str(cert))
            context.verify_flags &= ~ssl.VERIFY_X509_STRICT  # a bare test certificate
            yield {
                "https": f"https://127.0.0.1:{https_port}",
                "http_port": http_port,
                "tls": context,
                "logs": [tmp_path / "daphne.log", tmp_path / "error.log"],
            }
        finally:
            stop(server)
            server.stderr.close()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_nginx_site_serves_pages_static_files_and_the_live_socket(behind_nginx):
    base, tls = behind_nginx["https"], behind_nginx["tls"]
    org = make_organization()
    user = make_member(org)  # no role group: may look, which is all the socket needs
    password = uuid.uuid4().hex
    # The production server hashes with the default hashers, not the tests' fast one.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(password, hasher.salt())
    user.save(update_fields=["password"])

    jar = CookieJar()
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(jar), urllib.request.HTTPSHandler(context=tls)
    )
    # Plain HTTP goes to HTTPS.
    plain = http.client.HTTPConnection("127.0.0.1", behind_nginx["http_port"], timeout=10)
    plain.request("GET", "/accounts/login/")
    redirect = plain.getresponse()
    assert redirect.status == 301 and redirect.headers["Location"].startswith("https://")
    plain.close()

    # A page through nginx and daphne; its CSS from nginx itself, compressed ahead.
    with browser.open(base + "/accounts/login/", timeout=10) as response:
        login_page = response.read().decode()
    (css,) = re.findall(r'href="(/static/css/fleetgate\.[0-9a-f]{12}\.css)"', login_page)
    request = urllib.request.Request(base + css, headers={"Accept-Encoding": "gzip"})
    with browser.open(request, timeout=10) as response:
        assert response.status == 200 and response.headers["Server"].startswith("nginx")
        assert response.headers["Content-Encoding"] == "gzip"
        assert "immutable" in response.headers["Cache-Control"]

    # Log in as a browser would (CSRF checks the HTTPS origin nginx forwarded).
    (token,) = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page)
    form = urllib.parse.urlencode(
        {"username": user.username, "password": password, "csrfmiddlewaretoken": token}
    ).encode()
    login = urllib.request.Request(
        base + "/accounts/login/",
        data=form,
        headers={"Origin": base, "Referer": base + "/accounts/login/"},
    )
    with browser.open(login, timeout=10) as response:
        assert not response.url.endswith("/accounts/login/"), "the login was refused"
    session = next(c.value for c in jar if c.name == settings.SESSION_COOKIE_NAME)

    # The dashboard's WebSocket through the /ws/ location: upgraded, authenticated.
    from websockets.sync.client import connect

    url = base.replace("https://", "wss://") + "/ws/live/"
    headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"}
    try:
        with connect(
            url, ssl=tls, origin=base, additional_headers=headers, open_timeout=30
        ) as socket_:
            hello = json.loads(socket_.recv(timeout=30))
    except TimeoutError:
        tails = {log.name: log.read_text()[-3000:] for log in behind_nginx["logs"]}
        raise AssertionError(f"no WebSocket answer through nginx; logs: {tails}") from None
    assert hello == {"kind": "hello", "organization": org.pk}


# -- Mosquitto -------------------------------------------------------------------------


class Client:
    def __init__(self, port: int, user: str | None, password: str | None = None):
        self.got, self.refused = [], None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"kit-{uuid.uuid4().hex[:10]}"
        )
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.connected = False

        def on_connect(client, userdata, flags, reason_code, properties):
            self.connected, self.refused = not reason_code.is_failure, reason_code.is_failure

        self.client.on_connect = on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        deadline = time.monotonic() + 5
        while self.refused is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_mosquitto_config_with_the_acl(tmp_path):
    broker = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(broker).exists() or not shutil.which("mosquitto_passwd"):
        pytest.skip("Mosquitto (mosquitto, mosquitto_passwd) is not installed")
    port = free_port()
    accounts = {"fleetgate-portal": "portal-pw", "gw-a": "a-pw", "gw-b": "b-pw"}
    passwd = tmp_path / "fleetgate.passwd"
    for user, password in accounts.items():
        create = ["-c"] if not passwd.exists() else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(passwd), user, password], check=True)
    (tmp_path / "fleetgate.acl").write_text(
        (DEPLOY / "mosquitto/fleetgate.acl.example").read_text()
    )
    conf = shipped(
        "mosquitto/fleetgate.conf",
        {
            "listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
            "/etc/mosquitto/fleetgate.passwd": str(passwd),
            "/etc/mosquitto/fleetgate.acl": str(tmp_path / "fleetgate.acl"),
        },
    )
    # What Debian's main mosquitto.conf adds; as root, stay root to use the test's files.
    conf += f"\npersistence_location {tmp_path}/\n" + ("user root\n" if os.getuid() == 0 else "")
    (tmp_path / "mosquitto.conf").write_text(conf)
    server = subprocess.Popen([broker, "-c", str(tmp_path / "mosquitto.conf")], text=True)
    clients = []
    try:
        wait_port(port, server)
        anonymous = Client(port, None)
        clients.append(anonymous)
        assert anonymous.refused, "anonymous clients must be refused"
        portal, gw_a, gw_b = (Client(port, u, p) for u, p in accounts.items())
        clients += [portal, gw_a, gw_b]
        assert portal.connected and gw_a.connected and gw_b.connected
        # The bridges' shared subscription, a gateway's command subscription.
        portal.client.subscribe("$share/fleetgate-bridges/fleetgate/v1/gw/+/+", qos=1)
        gw_a.client.subscribe("fleetgate/v1/gw/gw-a/cmd", qos=1)
        gw_b.client.subscribe("fleetgate/v1/gw/gw-a/cmd", qos=1)  # not its own: denied
        time.sleep(0.3)
        gw_a.client.publish("fleetgate/v1/gw/gw-a/evt", b"mine", qos=1).wait_for_publish(5)
        gw_a.client.publish("fleetgate/v1/gw/gw-b/evt", b"forged", qos=1).wait_for_publish(5)
        portal.client.publish("fleetgate/v1/gw/gw-a/cmd", b"do", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (gw_a.got and len(portal.got) >= 2):
            time.sleep(0.05)
        time.sleep(0.3)  # anything that should not arrive has had its chance
        assert ("fleetgate/v1/gw/gw-a/cmd", b"do") in gw_a.got
        assert gw_b.got == []
        assert ("fleetgate/v1/gw/gw-a/evt", b"mine") in portal.got
        assert ("fleetgate/v1/gw/gw-b/evt", b"forged") not in portal.got
    finally:
        for client in clients:
            client.close()
        stop(server)


# -- Redis and PostgreSQL --------------------------------------------------------------


def test_redis_settings_load(tmp_path):
    server_binary = shutil.which("redis-server")
    if not server_binary:
        pytest.skip("redis-server is not installed")
    import redis

    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\ninclude {DEPLOY / 'redis/fleetgate.conf'}\n"
    )
    server = subprocess.Popen([server_binary, str(conf)], stdout=subprocess.DEVNULL)
    try:
        wait_port(port, server)
        client = redis.Redis(port=port)
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("save") == {"save": ""}
        client.close()
    finally:
        stop(server)


def test_postgresql_settings_are_real_settings():
    """Every name in deploy/postgresql/fleetgate.conf is one PostgreSQL knows, and its
    value is one it accepts for that setting's type (checked against pg_settings)."""
    import psycopg

    server = os.environ.get(
        "FLEETGATE_TEST_POSTGRES_URL", "postgres://postgres:fleetgate@127.0.0.1:5432/fleetgate"
    )
    url = urllib.parse.urlsplit(server)._replace(path="/postgres").geturl()  # any database
    try:
        connection = psycopg.connect(url, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL does not answer at {url}: {exc}")
    text = (DEPLOY / "postgresql/fleetgate.conf").read_text()
    wanted = dict(re.findall(r"^(\w+)\s*=\s*(\S+)", text, re.MULTILINE))
    assert len(wanted) >= 10
    with connection:
        rows = connection.execute(
            "SELECT name, vartype, enumvals FROM pg_settings WHERE name = ANY(%s)",
            [list(wanted)],
        ).fetchall()
    known = {name: (vartype, enumvals) for name, vartype, enumvals in rows}
    assert set(wanted) == set(known), set(wanted) - set(known)
    for name, value in wanted.items():
        vartype, enumvals = known[name]
        if vartype == "enum":
            assert value in enumvals, (name, value)
        elif vartype == "integer":
            assert re.fullmatch(r"\d+(kB|MB|GB|TB|ms|s|min|h|d)?", value), (name, value)
        elif vartype == "real":
            float(value)
