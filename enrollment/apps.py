from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    name = "enrollment"
    verbose_name = "Enrollment"

    def ready(self):
        from devices import operations
        from enrollment import services, widgets  # noqa: F401  (widgets register themselves)

        # Records follow their operations' outcomes; devices knows no enrollment record.
        if services.follow_operations not in operations.FINISH_HOOKS:
            operations.FINISH_HOOKS.append(services.follow_operations)
