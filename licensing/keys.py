"""The DEMO license key pair: for tests and the demo, never for a real deployment.

Both halves are public (they are in this repository), so anybody can sign a license
that the demo public key accepts. A real deployment sets ``LICENSE_PUBLIC_KEY`` to the
vendor's own public key (``manage.py generate_license_keypair`` makes a pair) and the
vendor keeps the private half off every portal. ``portal/settings.py`` repeats the
public half as the setting's default (the portal does not import feature apps); a test
pins the two together, and ``manage.py check`` warns when DEBUG is off and the demo
key is still the one in use.

Both are base64 of the raw 32-byte Ed25519 keys.
"""

DEMO_PUBLIC_KEY = "pz1TFHJCgqhGbaKK0HVedw8Y6qYuRcr4cJMdLmGJbac="

# DEMO ONLY — publicly known, grants nothing. Never sign a customer's license with it.
DEMO_PRIVATE_KEY = "93hqzqOBKyd4dnfo8Q1nQqQSm3Y6x1SXZeP6X/pUSUs="
