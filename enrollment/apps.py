from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    name = "enrollment"
    verbose_name = "Enrollment"

    def ready(self):
        from devices import device_page, operations
        from enrollment import device_page as enrollment_page
        from enrollment import services, widgets  # noqa: F401  (widgets register themselves)

        # The device page shows the installation photo and the enrollment records.
        if enrollment_page.photo_panel not in device_page.PANELS:
            device_page.PANELS.append(enrollment_page.photo_panel)
        if enrollment_page.records not in device_page.TIMELINE_SOURCES:
            device_page.TIMELINE_SOURCES.append(enrollment_page.records)

        # Records follow their operations' outcomes; devices knows no enrollment record.
        if services.follow_operations not in operations.FINISH_HOOKS:
            operations.FINISH_HOOKS.append(services.follow_operations)
