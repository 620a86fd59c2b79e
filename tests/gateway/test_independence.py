"""The gateway package runs on a gateway box: no Django, nothing of the portal."""

import subprocess
import sys

from tests.gateway.portal_double import REPO

MODULES = [
    "gateway.protocol",
    "gateway.agent",
    "gateway.simulate",
    "gateway.__main__",
    "gateway.drivers.simulated",
    "gateway.drivers.ble",
]


def test_gateway_imports_no_django_and_no_portal_app():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'django', 'portal', 'devices', 'enrollment', 'licensing', 'firmware'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)}
    )
