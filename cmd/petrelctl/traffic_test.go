package main

import "testing"

func TestRate(t *testing.T) {
	for _, c := range []struct {
		now, before uint64
		secs, want  float64
	}{
		{30, 10, 2, 10},
		{5, 10, 1, 5}, // counters reset (a backend re-added): from zero
		{10, 10, 3, 0},
	} {
		if got := rate(c.now, c.before, c.secs); got != c.want {
			t.Errorf("rate(%d, %d, %v) = %v, want %v", c.now, c.before, c.secs, got, c.want)
		}
	}
	for v, want := range map[float64]string{512: "512", 2048: "2.0K", 3 << 20: "3.0M", 5 << 30: "5.0G"} {
		if got := humanBytes(v); got != want {
			t.Errorf("humanBytes(%v) = %q, want %q", v, got, want)
		}
	}
}
