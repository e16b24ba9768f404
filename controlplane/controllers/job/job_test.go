package job

import "testing"

func TestFormatIndexes(t *testing.T) {
	cases := map[string]map[int]bool{
		"":          {},
		"0":         {0: true},
		"0-2":       {0: true, 1: true, 2: true},
		"0-1,3,5-6": {0: true, 1: true, 3: true, 5: true, 6: true},
	}
	for want, set := range cases {
		if got := formatIndexes(set); got != want {
			t.Errorf("formatIndexes(%v) = %q, want %q", set, got, want)
		}
	}
}
