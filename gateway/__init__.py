"""Fleetgate's gateway side: the wire protocol and the gateway agent.

Plain Python with no Django and nothing from the portal, so it runs on a gateway box;
the portal imports ``gateway.protocol`` from here so both ends share one definition.
"""

__version__ = "0.1.0"
