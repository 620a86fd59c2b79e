"""One filter definition per list, shared by its widget and its API (django-filter).

An app's ``filters.py`` declares each list's search, filters and sort once, as a
``FilterSet`` on this base:

- the API filters through ``FilterBackend``: a bad value is a 400 field error, and the
  OpenAPI schema lists the parameters (drf-spectacular reads the FilterSet);
- the widget binds the same FilterSet to ``request.GET``: a bad value is left out (a
  stale or hand-edited URL narrows less, never fails), and the widget reads the values
  back for its form, its chips (``chips``) and its links (``url``).

Ids of the organization's rows (a gateway, a group) are checked with one query each —
and only once every other value is valid, so a request with a bad value costs no
lookup. A widget that has loaded those rows for its selects passes them (``rows=``)
and the check costs nothing.
"""

from urllib.parse import urlencode

import django_filters
from django import forms
from django.db.models import Q
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field


def describe(filter_, schema: dict) -> None:
    """What the OpenAPI schema says of a filter's parameter, with its help text."""
    if help_text := filter_.extra.get("help_text"):
        schema = {**schema, "description": help_text}
    extend_schema_field(schema)(filter_)


class SearchField(forms.CharField):
    """Free text with its runs of white space made one space."""

    def to_python(self, value):
        return " ".join(super().to_python(value).split())


class SearchFilter(django_filters.CharFilter):
    """A substring of any of ``fields``, any case."""

    field_class = SearchField

    def __init__(self, *, fields, **kwargs):
        super().__init__(**kwargs)
        self.fields = fields
        if "max_length" in kwargs:
            describe(self, {"type": "string", "maxLength": kwargs["max_length"]})

    def filter(self, qs, value):
        if not value:
            return qs
        match = Q()
        for name in self.fields:
            match |= Q(**{f"{name}__icontains": value})
        return qs.filter(match)

    def chip(self, value):
        return f"“{value}”"


class ChoiceFilter(django_filters.ChoiceFilter):
    """One of ``choices``; its chip shows the choice's label."""

    def chip(self, value):
        return dict(self.extra["choices"]).get(value, value)


class RowIdField(forms.IntegerField):
    """A row's id: a positive integer; ``FilterSet`` looks the row up."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(**kwargs)


class RowIdFilter(django_filters.Filter):
    """A positive id, compared as given (a page key, a batch)."""

    field_class = RowIdField

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        describe(self, {"type": "integer", "minimum": 1})


class RowFilter(django_filters.Filter):
    """A row of the organization (``model``) by id; another organization's is unknown.

    ``missing``: the sentence for an id of no such row. The cleaned value is the row
    (with ``pk`` and ``name``), so the widget can show it in a chip.
    """

    field_class = RowIdField

    def __init__(self, *, model, missing, scoped=True, **kwargs):
        super().__init__(**kwargs)
        self.row_model, self.missing, self.scoped = model, missing, scoped
        describe(self, {"type": "integer", "minimum": 1})

    def rows(self, organization):
        queryset = self.row_model.objects.all()
        if self.scoped:
            queryset = queryset.for_organization(organization)
        return queryset.only("pk", "name")

    def chip(self, value):
        return value.name


class SortFilter(django_filters.ChoiceFilter):
    """``sorts`` maps a column to the fields it orders by; ``-column`` descends.

    The primary key breaks ties, so pages never overlap. Without a sort (or with a bad
    one, in the widget) the list is in ``default`` order.
    """

    def __init__(self, *, sorts, default, **kwargs):
        choices = [(key, key) for key in sorts] + [(f"-{key}", f"-{key}") for key in sorts]
        super().__init__(choices=choices, **kwargs)
        self.sorts, self.default = sorts, default

    def ordering(self, value):
        value = value or self.default
        key = value.removeprefix("-")
        sign = "-" if value.startswith("-") else ""
        return [sign + field for field in (*self.sorts[key], "pk")]

    def filter(self, qs, value):
        return qs.order_by(*self.ordering(value))


class FilterSet(django_filters.FilterSet):
    """The base of every list's filters; see the module's docstring.

    ``organization`` scopes the row lookups; ``rows`` maps a ``RowFilter``'s name to the
    rows already loaded (no query); ``base_url`` is the list's URL for ``url()``.
    """

    # Parameters of the widget only (page size, page, page key): kept in its links.
    link_params: tuple[str, ...] = ()

    def __init__(
        self, data=None, queryset=None, *, organization=None, rows=None, base_url="", **kwargs
    ):
        super().__init__(data if data is not None else {}, queryset, **kwargs)
        self.organization = organization
        self.loaded = rows or {}
        self.base_url = base_url

    def __getattr__(self, name):
        """``filter.state`` in a template: the valid value of the filter ``state``."""
        if name in type(self).base_filters:
            return self.value(name)
        raise AttributeError(name)

    def filter_queryset(self, queryset):
        cleaned = self.form.cleaned_data
        self._resolve_rows(cleaned)
        for name, filter_ in self.filters.items():
            if isinstance(filter_, SortFilter) or name in cleaned:
                queryset = filter_.filter(queryset, cleaned.get(name))
        return queryset

    def _resolve_rows(self, cleaned):
        """Ids become rows: from the loaded ones, else one query each (all values valid)."""
        if getattr(self, "_rows_resolved", False):
            return
        self._rows_resolved = True
        may_query = not self.form.errors  # a bad value elsewhere: refused before any lookup
        for name, filter_ in self.filters.items():
            if not isinstance(filter_, RowFilter) or not isinstance(cleaned.get(name), int):
                continue
            pk = cleaned.pop(name)
            if name in self.loaded:
                row = next((r for r in self.loaded[name] if r.pk == pk), None)
            elif may_query:
                row = filter_.rows(self.organization).filter(pk=pk).first()
                if row is None:
                    self.form.add_error(name, filter_.missing)
            else:
                row = None
            if row is not None:
                cleaned[name] = row

    def is_valid(self):
        if not super().is_valid():
            return False
        self._resolve_rows(self.form.cleaned_data)
        return not self.form.errors

    # --- what the widget reads back ------------------------------------------------

    def value(self, name, default=""):
        """The valid value of ``name`` (a row for a ``RowFilter``), else ``default``."""
        self.form.errors  # noqa: B018  (cleans the form, once)
        cleaned = self.form.cleaned_data
        self._resolve_rows(cleaned)
        value = cleaned.get(name)
        return default if value in (None, "") else value

    def raw(self, name) -> str:
        """How the valid value of ``name`` is written in a URL ("" when it has none)."""
        value = self.value(name)
        filter_ = self.filters.get(name)
        if isinstance(filter_, SortFilter) and value == filter_.default:
            return ""
        return str(getattr(value, "pk", value))

    @property
    def is_filtered(self) -> bool:
        return any(
            self.raw(name) for name, f in self.filters.items() if not isinstance(f, SortFilter)
        )

    def link_value(self, name) -> str:
        """A widget-only parameter's canonical value ("" when it is the default)."""
        return ""

    def params(self, **changes) -> dict:
        """The canonical query: only what differs from the defaults, ``page=1`` left out."""
        values = {name: self.raw(name) for name in self.filters}
        values |= {name: self.link_value(name) for name in self.link_params}
        values.update(changes)
        if str(values.get("page", "")) == "1":
            values["page"] = ""
        return {key: value for key, value in values.items() if value not in ("", None)}

    def url(self, **changes) -> str:
        query = urlencode(self.params(**changes))
        return f"{self.base_url}?{query}" if query else self.base_url

    # Parameters a chip's removal also resets (a page key, say).
    chip_resets: tuple[str, ...] = ()

    @property
    def chips(self) -> list[dict]:
        """The active filters, each with the URL that drops it."""
        chips = []
        for name, filter_ in self.filters.items():
            value = self.value(name)
            if value == "" or not hasattr(filter_, "chip"):
                continue
            resets = {key: "" for key in self.chip_resets}
            chips.append(
                {
                    "field": name,
                    "label": filter_.label,
                    "value": filter_.chip(value),
                    "url": self.url(**{name: ""}, **resets),
                }
            )
        return chips


class FilterBackend(DjangoFilterBackend):
    """The API's side: the view's organization scopes the FilterSet's row lookups."""

    def get_filterset_kwargs(self, request, queryset, view):
        return super().get_filterset_kwargs(request, queryset, view) | {
            "organization": view.organization
        }


__all__ = [
    "ChoiceFilter",
    "FilterBackend",
    "FilterSet",
    "RowFilter",
    "RowIdFilter",
    "SearchFilter",
    "SortFilter",
]
