"""The Firmware widget (``images``) and the gateways' image endpoint (``download``)."""
