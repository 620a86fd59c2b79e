"""Create (or print) a user's REST API token, for scripts and other systems."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from portal.tenancy import memberships_of


class Command(BaseCommand):
    help = (
        "Print USERNAME's API token, creating it if needed. Use it as the header "
        "'Authorization: Token <key>'. --rotate replaces it (the old one stops working)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--rotate", action="store_true", help="Replace the existing token with a new one."
        )

    def handle(self, username, rotate=False, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        if not user.is_active:
            raise CommandError(f"{username!r} is inactive: a token would not work.")
        with transaction.atomic():
            if rotate:
                Token.objects.filter(user=user).delete()
            token, created = Token.objects.get_or_create(user=user)
        if not memberships_of(user):
            self.stderr.write(
                f"Note: {username} belongs to no organization; the API will answer 403."
            )
        if created and not rotate:
            self.stderr.write(f"Created a token for {username}.")
        elif rotate:
            self.stderr.write(f"Replaced {username}'s token.")
        self.stdout.write(token.key)
