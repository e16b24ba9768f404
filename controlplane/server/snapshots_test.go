package server

import (
	"testing"
	"time"
)

func TestParseSnapshotSchedule(t *testing.T) {
	base := time.Date(2026, 12, 3, 10, 17, 0, 0, time.UTC)
	for _, tc := range []struct {
		spec string
		next time.Time // zero: an error
	}{
		{"30m", base.Add(30 * time.Minute)},
		{"@every 1h", base.Add(time.Hour)},
		{"@hourly", time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)},
		{"0 */6 * * *", time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)},
		{"10ms", time.Time{}},
		{"every hour", time.Time{}},
	} {
		sched, err := parseSnapshotSchedule(tc.spec)
		if tc.next.IsZero() {
			if err == nil {
				t.Errorf("%q: no error", tc.spec)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if got := sched.Next(base); !got.Equal(tc.next) {
			t.Errorf("%q: next after %s = %s, want %s", tc.spec, base, got, tc.next)
		}
	}
	if s, err := parseSnapshotSchedule(""); s != nil || err != nil {
		t.Errorf("empty: %v, %v; want no schedule", s, err)
	}
}
