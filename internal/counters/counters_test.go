package counters

import (
	"testing"
	"time"
)

func TestWindowBounds(t *testing.T) {
	utc := func(y int, m time.Month, d, h, min, s int) time.Time {
		return time.Date(y, m, d, h, min, s, 0, time.UTC)
	}
	for _, tc := range []struct {
		w          Window
		at         time.Time
		start, end time.Time
	}{
		{WindowMinute, utc(2026, 3, 11, 12, 30, 15), utc(2026, 3, 11, 12, 30, 0), utc(2026, 3, 11, 12, 31, 0)},
		{WindowMinute, utc(1969, 12, 31, 23, 59, 30), utc(1969, 12, 31, 23, 59, 0), utc(1970, 1, 1, 0, 0, 0)},
		{WindowHour, utc(2026, 3, 11, 12, 30, 15), utc(2026, 3, 11, 12, 0, 0), utc(2026, 3, 11, 13, 0, 0)},
		{WindowDay, utc(2026, 3, 11, 23, 59, 59), utc(2026, 3, 11, 0, 0, 0), utc(2026, 3, 12, 0, 0, 0)},
		// A local time is placed in its UTC window.
		{WindowDay, time.Date(2026, 3, 12, 1, 0, 0, 0, time.FixedZone("+05", 5*3600)), utc(2026, 3, 11, 0, 0, 0), utc(2026, 3, 12, 0, 0, 0)},
		{WindowWeek, utc(2026, 3, 11, 12, 0, 0), utc(2026, 3, 9, 0, 0, 0), utc(2026, 3, 16, 0, 0, 0)},   // Wednesday
		{WindowWeek, utc(2026, 3, 15, 23, 59, 59), utc(2026, 3, 9, 0, 0, 0), utc(2026, 3, 16, 0, 0, 0)}, // Sunday
		{WindowWeek, utc(2026, 3, 16, 0, 0, 0), utc(2026, 3, 16, 0, 0, 0), utc(2026, 3, 23, 0, 0, 0)},   // Monday
		{WindowWeek, utc(1970, 1, 1, 0, 0, 0), utc(1969, 12, 29, 0, 0, 0), utc(1970, 1, 5, 0, 0, 0)},    // a Thursday
		{WindowWeek, utc(2027, 1, 1, 0, 0, 0), utc(2026, 12, 28, 0, 0, 0), utc(2027, 1, 4, 0, 0, 0)},    // across a year
		{WindowMonth, utc(2026, 2, 28, 23, 59, 59), utc(2026, 2, 1, 0, 0, 0), utc(2026, 3, 1, 0, 0, 0)},
		{WindowMonth, utc(2028, 2, 29, 12, 0, 0), utc(2028, 2, 1, 0, 0, 0), utc(2028, 3, 1, 0, 0, 0)},
		{WindowMonth, utc(2026, 12, 31, 23, 59, 59), utc(2026, 12, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0)},
		{WindowTotal, utc(2026, 3, 11, 12, 0, 0), time.Unix(0, 0).UTC(), time.Time{}},
		{"fortnight", utc(2026, 3, 11, 12, 0, 0), time.Time{}, time.Time{}},
	} {
		start, end := tc.w.Bounds(tc.at)
		if !start.Equal(tc.start) || !end.Equal(tc.end) {
			t.Errorf("%s.Bounds(%v) = [%v, %v), want [%v, %v)", tc.w, tc.at, start, end, tc.start, tc.end)
		}
		if tc.w.Valid() && (start.Location() != time.UTC || !end.IsZero() && end.Location() != time.UTC) {
			t.Errorf("%s.Bounds(%v) not in UTC", tc.w, tc.at)
		}
	}
}

func TestValid(t *testing.T) {
	for _, w := range []Window{WindowMinute, WindowHour, WindowDay, WindowWeek, WindowMonth, WindowTotal} {
		if !w.Valid() {
			t.Errorf("%q invalid", w)
		}
	}
	for _, w := range []Window{"", "Minute", "year"} {
		if w.Valid() {
			t.Errorf("%q valid", w)
		}
	}
	for _, u := range []Unit{UnitRequests, UnitTokens, UnitNanoUSD} {
		if !u.Valid() || u.String() == "" {
			t.Errorf("unit %d invalid", u)
		}
	}
	if Unit(0).Valid() || Unit(4).Valid() {
		t.Error("undefined unit valid")
	}
}
