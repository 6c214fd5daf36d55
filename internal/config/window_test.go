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
