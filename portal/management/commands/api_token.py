"""Issue, list or revoke a user's REST API tokens, for scripts and other systems."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal import tokens
from portal.tenancy import memberships_of


class Command(BaseCommand):
    help = (
        "Issue a new API token for USERNAME and print it (only the digest is stored: save "
        "it now). Use it as the header 'Authorization: Token <key>'. --list shows the "
        "user's working tokens, --revoke ID (or --revoke all) stops them."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for (shown in lists).")
        parser.add_argument(
            "--days", type=int, default=None, help="Days until it expires (default: settings)."
        )
        parser.add_argument(
            "--list", action="store_true", dest="list_tokens", help="List working tokens."
        )
        parser.add_argument(
            "--revoke", metavar="ID|all", help="Revoke one token (by id) or all of them."
        )

    def handle(self, username, name="", days=None, list_tokens=False, revoke=None, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        if list_tokens:
            for token in tokens.active(user):
                self.stdout.write(
                    f"{token.pk}\t{token.prefix}…\t{token.name or '-'}\t"
                    f"expires {token.expires_at:%Y-%m-%d}\t"
                    f"last used {f'{token.last_used_at:%Y-%m-%d %H:%M}' if token.last_used_at else 'never'}"
                )
            return
        if revoke:
            ids = None if revoke == "all" else [self._id(revoke)]
            count = tokens.revoke(user, ids)
            self.stderr.write(f"Revoked {count} token{'s' if count != 1 else ''} of {username}.")
            return
        if not user.is_active:
            raise CommandError(f"{username!r} is inactive: a token would not work.")
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        token, key = tokens.issue(user, name=name or "api_token command", days=days)
        if not memberships_of(user):
            self.stderr.write(
                f"Note: {username} belongs to no organization; the API will answer 403."
            )
        self.stderr.write(
            f"Issued token {token.pk} for {username}, valid until {token.expires_at:%Y-%m-%d}. "
            "It is shown only now."
        )
        self.stdout.write(key)

    @staticmethod
    def _id(value):
        try:
            return int(value)
        except ValueError:
            raise CommandError("--revoke takes a token id (see --list) or 'all'.") from None
