from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from django.db.models.signals import post_save

        from portal import audit, signals, widgets
        from portal.models import Organization
        from portal.settings import DEMO_SECRET_KEY

        signals.connect()
        post_save.connect(audit.start_chain, sender=Organization, dispatch_uid="audit-chain")
        widgets.register(
            widgets.Widget(
                key="audit", title="Audit log", url_name="audit:log", order=90, rule="view_audit"
            )
        )

        if not settings.DEBUG and settings.SECRET_KEY == DEMO_SECRET_KEY:
            raise ImproperlyConfigured(
                "Refusing to start: DEBUG is off but SECRET_KEY is the demo key. "
                "Set SECRET_KEY to a long random value (python -c 'import secrets; "
                "print(secrets.token_urlsafe(50))'), or DEBUG=true for the demo and "
                "development."
            )
