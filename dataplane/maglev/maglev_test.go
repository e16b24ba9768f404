package maglev

import (
	"fmt"
	"slices"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.244.%d.%d:8080", i/200, i%200+2)
	}
	return out
}

func TestTableIsFullAndBalanced(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 100} {
		table := Table(names(n), TableSize)
		if len(table) != TableSize {
			t.Fatalf("%d backends: %d entries", n, len(table))
		}
		count := make([]int, n)
		for _, b := range table {
			if b < 0 || b >= n {
				t.Fatalf("%d backends: entry %d", n, b)
			}
			count[b]++
		}
		// Maglev's population gives each backend ⌊M/N⌋ or ⌈M/N⌉ entries.
		lo, hi := TableSize/n, (TableSize+n-1)/n
		for i, c := range count {
			if c < lo || c > hi {
				t.Errorf("%d backends: backend %d has %d entries, want %d-%d", n, i, c, lo, hi)
			}
		}
	}
	if Table(nil, TableSize) != nil {
		t.Error("a table without backends")
	}
}

func TestTableDoesNotDependOnOrder(t *testing.T) {
	a := names(7)
	b := slices.Clone(a)
	slices.Reverse(b)
	ta, tb := Table(a, TableSize), Table(b, TableSize)
	for i := range ta {
		if a[ta[i]] != b[tb[i]] {
			t.Fatalf("entry %d: %s vs %s", i, a[ta[i]], b[tb[i]])
		}
	}
}

// Removing one backend of ten moves its own entries and few others.
func TestRemovingABackendMovesFewFlows(t *testing.T) {
	all := names(10)
	before := Table(all, TableSize)
	gone := all[3]
	rest := slices.Delete(slices.Clone(all), 3, 4)
	after := Table(rest, TableSize)
	moved := 0
	for i := range before {
		if all[before[i]] != gone && all[before[i]] != rest[after[i]] {
			moved++
		}
	}
	// Random reassignment would move ~90% of the other entries.
	if frac := float64(moved) / TableSize; frac > 0.15 {
		t.Errorf("%.0f%% of the entries of backends that stayed moved", frac*100)
	}
}
