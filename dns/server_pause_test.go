package dns

import (
	"testing"
	"time"
)

func TestRebuildPauseFollowsRebuildCost(t *testing.T) {
	for _, tc := range []struct{ cost, want time.Duration }{
		{0, 5 * time.Millisecond},
		{time.Millisecond, 5 * time.Millisecond},
		{10 * time.Millisecond, 40 * time.Millisecond},
		{50 * time.Millisecond, 80 * time.Millisecond},
	} {
		if got := rebuildPause(tc.cost); got != tc.want {
			t.Errorf("rebuildPause(%v) = %v, want %v", tc.cost, got, tc.want)
		}
	}
}
