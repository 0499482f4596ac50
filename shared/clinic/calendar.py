"""The clinic's working hours: reminders and escalations count working time, not clock time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.audit import (
    as_utc,
)
from shared.config import Settings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class WorkingCalendar:
    """The clinic's working hours (local time, the same each working day) and working days."""

    opens: time
    closes_minutes: int  # minutes after midnight; 1440: midnight at the end of the day
    days: frozenset[int]  # Monday 0 .. Sunday 6
    zone: ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkingCalendar:
        return cls.parse(settings.clinician_working_hours, settings.clinician_working_days, settings.clinician_timezone)

    @classmethod
    def parse(cls, hours: str, days: str, zone: str) -> WorkingCalendar:
        start_text, end_text = (part.strip() for part in hours.split("-", 1))
        start_hour, start_minute = (int(x) for x in start_text.split(":"))
        end_hour, end_minute = (int(x) for x in end_text.split(":"))
        closes = end_hour * 60 + end_minute
        if not 0 <= start_hour * 60 + start_minute < closes <= 24 * 60:
            raise ValueError(f"working hours {hours!r}: expected HH:MM-HH:MM, opening before closing")
        chosen: set[int] = set()
        for part in days.lower().replace(" ", "").split(","):
            first, _, last = part.partition("-")
            start, end = WEEKDAYS.index(first[:3]), WEEKDAYS.index((last or first)[:3])
            chosen.update(range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)])
        return cls(time(start_hour, start_minute), closes, frozenset(chosen), ZoneInfo(zone))

    @property
    def day_seconds(self) -> float:
        return (self.closes_minutes - (self.opens.hour * 60 + self.opens.minute)) * 60.0

    def working_seconds(self, start: datetime, end: datetime) -> float:
        """Working time between two moments."""
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            return 0.0
        total = 0.0
        day: date = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date()
        while day <= last:
            if day.weekday() in self.days:
                opening = datetime.combine(day, self.opens, tzinfo=self.zone)
                closing = datetime.combine(day, time(), tzinfo=self.zone) + timedelta(minutes=self.closes_minutes)
                overlap = (min(end, closing) - max(start, opening)).total_seconds()
                total += max(overlap, 0.0)
            day += timedelta(days=1)
        return total
