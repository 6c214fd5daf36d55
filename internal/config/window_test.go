package config

import (
	"strings"
	"testing"
	"time"
)

func TestMaintenanceWindow(t *testing.T) {
	// 2026-01-01 is a Thursday.
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		w    MaintenanceWindow
		t    string
		want bool
	}{
		{"no window is always open", MaintenanceWindow{}, "2026-01-01T12:00:00Z", true},
		{"inside", MaintenanceWindow{Start: "02:00", End: "06:00"}, "2026-01-01T03:00:00Z", true},
		{"end is exclusive", MaintenanceWindow{Start: "02:00", End: "06:00"}, "2026-01-01T06:00:00Z", false},
		{"other day", MaintenanceWindow{Days: []string{"Tue"}, Start: "02:00", End: "06:00"}, "2026-01-01T03:00:00Z", false},
		{"listed day", MaintenanceWindow{Days: []string{"Thu"}, Start: "02:00", End: "06:00"}, "2026-01-01T03:00:00Z", true},
		{"time zone", MaintenanceWindow{Start: "02:00", End: "06:00", Timezone: "Europe/Zurich"}, "2026-01-01T03:00:00Z", true},
		{"time zone outside", MaintenanceWindow{Start: "02:00", End: "06:00", Timezone: "America/New_York"}, "2026-01-01T03:00:00Z", false},
		{"wraps past midnight, after midnight counts for the day before", MaintenanceWindow{Days: []string{"Wed"}, Start: "22:00", End: "04:00"}, "2026-01-01T01:00:00Z", true},
		{"wraps past midnight, wrong day", MaintenanceWindow{Days: []string{"Thu"}, Start: "22:00", End: "04:00"}, "2026-01-01T01:00:00Z", false},
		{"start is inclusive", MaintenanceWindow{Start: "02:00", End: "06:00"}, "2026-01-01T02:00:00Z", true},
		{"a minute before the start", MaintenanceWindow{Start: "02:00", End: "06:00"}, "2026-01-01T01:59:00Z", false},
		{"wrapping: the start is inclusive", MaintenanceWindow{Start: "22:00", End: "04:00"}, "2026-01-01T22:00:00Z", true},
		{"wrapping: a minute before the start", MaintenanceWindow{Start: "22:00", End: "04:00"}, "2026-01-01T21:59:00Z", false},
		{"wrapping: the end is exclusive", MaintenanceWindow{Start: "22:00", End: "04:00"}, "2026-01-01T04:00:00Z", false},
		{"wrapping: before midnight counts for that day", MaintenanceWindow{Days: []string{"Thu"}, Start: "22:00", End: "04:00"}, "2026-01-01T23:00:00Z", true},
		{"an empty window is never open", MaintenanceWindow{Start: "02:00", End: "02:00"}, "2026-01-01T02:00:00Z", false},
		{"minutes count: a minute before 02:30", MaintenanceWindow{Start: "02:30", End: "06:15"}, "2026-01-01T02:29:00Z", false},
		{"minutes count: at 02:30", MaintenanceWindow{Start: "02:30", End: "06:15"}, "2026-01-01T02:30:00Z", true},
		{"minutes count: 06:14 is in", MaintenanceWindow{Start: "02:30", End: "06:15"}, "2026-01-01T06:14:00Z", true},
		{"minutes count: 06:15 is out", MaintenanceWindow{Start: "02:30", End: "06:15"}, "2026-01-01T06:15:00Z", false},
		{"day names in any case", MaintenanceWindow{Days: []string{"THURSDAY"}, Start: "02:00", End: "06:00"}, "2026-01-01T03:00:00Z", true},
	}
	for _, tc := range tests {
		if got := tc.w.Open(at(tc.t)); got != tc.want {
			t.Errorf("%s: Open(%s) = %v", tc.name, tc.t, got)
		}
	}
}

func TestMaintenanceWindowValidation(t *testing.T) {
	bad := validYAML + "maintenanceWindow:\n  days: [Funday]\n  start: \"25:00\"\n  end: \"06:00\"\n  timezone: Mars/Olympus\n"
	_, err := Parse("drover.yaml", []byte(bad))
	for _, want := range []string{"maintenanceWindow.start", "maintenanceWindow.days", "maintenanceWindow.timezone"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %s", err, want)
		}
	}
}

// TestMaintenanceWindowDays: a day is its first three letters, in any case;
// shorter is not a day.
func TestMaintenanceWindowDays(t *testing.T) {
	for _, tc := range []struct {
		day string
		ok  bool
	}{{"Mon", true}, {"monday", true}, {"SUN", true}, {"Mo", false}, {"", false}, {"Mox", false}} {
		_, bad := MaintenanceWindow{Days: []string{tc.day}, Start: "02:00", End: "06:00"}.problems()["days"]
		if bad == tc.ok {
			t.Errorf("day %q: accepted %v, want %v", tc.day, !bad, tc.ok)
		}
	}
}
