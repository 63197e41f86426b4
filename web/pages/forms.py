"""What was wrong with a submitted form, in the shape the GOV.UK error summary and the fields' inline errors take.

    problems = Problems()
    if not name:
        problems.add("name", "Enter your user name")
    render(request, "page.html", errors=problems, values={"name": name})

and in the template (the layout shows the error summary and puts "Error: " in the title by itself):

    govukInput({'id': 'name', 'name': 'name', ..., 'errorMessage': errors.at('name')})

The field's key is the id of the input the summary links to, so the same words appear in the summary and at the
field, and the summary's link moves the focus to the field.
"""

from __future__ import annotations


class Problems:
    """Field id -> the one sentence that says what to fix there, in the order the fields appear on the page."""

    def __init__(self) -> None:
        self._by_field: dict[str, str] = {}

    def add(self, field: str, message: str) -> None:
        """The first problem found for a field is the one shown."""
        self._by_field.setdefault(field, message)

    def __bool__(self) -> bool:
        return bool(self._by_field)

    def __contains__(self, field: object) -> bool:
        return field in self._by_field

    def fields(self) -> list[str]:
        return list(self._by_field)

    def message(self, field: str) -> str | None:
        return self._by_field.get(field)

    def at(self, field: str) -> dict[str, str] | None:
        """The `errorMessage` option of a govuk-frontend field macro: None when the field has no problem."""
        message = self._by_field.get(field)
        return {"text": message} if message else None

    def summary(self) -> list[dict[str, str]]:
        """The `errorList` option of `govukErrorSummary`: each sentence linking to its field."""
        return [{"text": message, "href": f"#{field}"} for field, message in self._by_field.items()]
