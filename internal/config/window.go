package config

import (
	"fmt"
	"strings"
	"time"
)

// MaintenanceWindow says when upgrades may run: on Days (every day when
// empty), from Start to End (HH:MM, End before Start wraps past midnight),
// in Timezone (IANA, e.g. Europe/Zurich; default UTC).
type MaintenanceWindow struct {
	// Days are the weekdays the window opens (mon, tue, ...); empty: every day.
	Days []string `yaml:"days" json:"days,omitempty"`
	// Start is when the window opens, HH:MM.
	Start string `yaml:"start" json:"start,omitempty"`
	// End is when it closes, HH:MM (before Start: it spans midnight).
	End string `yaml:"end" json:"end,omitempty"`
	// Timezone is the IANA zone of Start and End (default UTC).
	Timezone string `yaml:"timezone" json:"timezone,omitempty"`
}

// Set says whether a window is configured.
func (w MaintenanceWindow) Set() bool { return w.Start != "" || w.End != "" }

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func (w MaintenanceWindow) problems() map[string]string {
	p := map[string]string{}
	if !w.Set() {
		return p
	}
	if _, err := parseClock(w.Start); err != nil {
		p["start"] = err.Error()
	}
	if _, err := parseClock(w.End); err != nil {
		p["end"] = err.Error()
	}
	if w.Timezone != "" {
		if _, err := time.LoadLocation(w.Timezone); err != nil {
			p["timezone"] = fmt.Sprintf("%q is not an IANA time zone", w.Timezone)
		}
	}
	for _, d := range w.Days {
		if _, ok := weekdays[strings.ToLower(d)[:min(3, len(d))]]; !ok || len(d) < 3 {
			p["days"] = fmt.Sprintf("%q is not a day (Mon, Tue, ...)", d)
		}
	}
	return p
}

// Open reports whether t falls in the window (always, when none is set).
func (w MaintenanceWindow) Open(t time.Time) bool {
	if !w.Set() {
		return true
	}
	loc := time.UTC
	if w.Timezone != "" {
		if l, err := time.LoadLocation(w.Timezone); err == nil {
			loc = l
		}
	}
	start, err1 := parseClock(w.Start)
	end, err2 := parseClock(w.End)
	if err1 != nil || err2 != nil {
		return false
	}
	lt := t.In(loc)
	now := lt.Hour()*60 + lt.Minute()
	day := lt.Weekday()
	in := false
	switch {
	case start <= end:
		in = now >= start && now < end
	case now >= start: // before midnight of a wrapping window
		in = true
	case now < end: // after midnight: the window opened the day before
		in = true
		day = (day + 6) % 7
	}
	if !in {
		return false
	}
	if len(w.Days) == 0 {
		return true
	}
	for _, d := range w.Days {
		if weekdays[strings.ToLower(d)[:3]] == day {
			return true
		}
	}
	return false
}

// String describes the window for messages.
func (w MaintenanceWindow) String() string {
	days := "every day"
	if len(w.Days) > 0 {
		days = strings.Join(w.Days, ",")
	}
	tz := w.Timezone
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf("%s %s-%s %s", days, w.Start, w.End, tz)
}
