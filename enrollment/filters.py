"""The enrollment records' list, filtered: one definition for the widget and the API."""

from enrollment.choices import EnrollmentStatus
from portal.filters import ChoiceFilter, FilterSet, RowIdFilter, SearchFilter

MAX_SEARCH_LENGTH = 64  # EnrollmentRecord.serial_number


class EnrollmentFilterSet(FilterSet):
    """Status, batch and part of a serial number; the widget adds its ``page``."""

    status = ChoiceFilter(choices=EnrollmentStatus.choices, label="Status")
    batch = RowIdFilter(field_name="batch_id", help_text="A batch id.")
    q = SearchFilter(
        fields=("serial_number",),
        max_length=MAX_SEARCH_LENGTH,
        label="Search",
        help_text="Part of a serial number.",
    )

    link_params = ("page",)
