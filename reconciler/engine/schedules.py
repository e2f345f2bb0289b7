"""When a job is due: `Every(seconds)`, or `DailyAt` a local wall time in an IANA time zone.

A daily slot is the local wall time of a calendar day converted to UTC; slots are aware UTC datetimes, so
they compare and store like every other timestamp. On a daylight-saving change (zoneinfo, fold=0):
- in a gap (Europe/Berlin's last Sunday of March, 02:00 → 03:00) a wall time that does not exist is read
  with the offset before the change, so 02:30 runs at 03:30 summer time: the day still has its one slot;
- in an overlap (the last Sunday of October, 03:00 → 02:00) a wall time that exists twice is its first
  occurrence, 02:30 summer time: the slot still runs once, not twice.
Only the latest slot at or before now is ever due; an older one that was missed is superseded by it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HH_MM = re.compile(r"(\d\d):(\d\d)")


@dataclass(frozen=True)
class Every:
    """Run every `seconds`, on each replica (the job itself must be safe to run on several at once)."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"an interval must be > 0 seconds, got {self.seconds!r}")


@dataclass(frozen=True)
class DailyAt:
    """Run once a day at `hour`:`minute` local time in `timezone`, at most `max_lateness_seconds` late (a slot
    missed by longer, e.g. while every replica was down, is skipped rather than run at a surprising time)."""

    hour: int
    minute: int
    timezone: str
    max_lateness_seconds: float

    def __post_init__(self) -> None:
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            raise ValueError(f"time of day {self.hour:02d}:{self.minute:02d} is out of range (00:00 to 23:59)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}: use an IANA name such as 'Africa/Lagos'") from None
        if not self.max_lateness_seconds >= 0:
            raise ValueError(f"max_lateness_seconds must be >= 0, got {self.max_lateness_seconds!r}")

    @classmethod
    def parse(cls, hh_mm: str, timezone: str, max_lateness_seconds: float) -> DailyAt:
        """From a config value such as "02:00"."""
        match = _HH_MM.fullmatch(hh_mm.strip())
        if match is None:
            raise ValueError(f"time of day {hh_mm!r} is not HH:MM (e.g. 02:00)")
        return cls(int(match[1]), int(match[2]), timezone, max_lateness_seconds)

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d} {self.timezone}"

    def latest_slot(self, now: datetime) -> datetime:
        """The last slot at or before `now` (aware), in UTC."""
        day = now.astimezone(ZoneInfo(self.timezone)).date()
        while (slot := self.slot_on(day)) > now:  # today's is still ahead: yesterday's (once, bar odd DST rules)
            day -= timedelta(days=1)
        return slot

    def due_slot(self, now: datetime) -> datetime | None:
        """The latest slot if it is at most `max_lateness_seconds` old, else None: nothing to run now."""
        slot = self.latest_slot(now)
        return slot if (now - slot).total_seconds() <= self.max_lateness_seconds else None

    def slot_on(self, day: date) -> datetime:
        """The slot of the calendar day `day` in the zone, in UTC (a catch-up run by hand names its day)."""
        wall = datetime.combine(day, time(self.hour, self.minute), tzinfo=ZoneInfo(self.timezone))
        return wall.astimezone(UTC)
