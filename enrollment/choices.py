"""Where an enrollment record stands."""

from django.db import models


class EnrollmentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


OPEN_STATUSES = (EnrollmentStatus.PENDING, EnrollmentStatus.IN_PROGRESS)
