package loadbalancer

import (
	"net/netip"
	"testing"
)

func TestParsePool(t *testing.T) {
	got, err := ParsePool("198.51.100.0/29, 203.0.113.10-203.0.113.12")
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{
		{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.6")},
		{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("203.0.113.12")},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("pool = %v, want %v", got, want)
	}
	if one, _ := ParsePool("198.51.100.7/32"); len(one) != 1 || one[0].First != one[0].Last {
		t.Errorf("a /32 is one address: %v", one)
	}
	for _, bad := range []string{"10.0.0.9-10.0.0.1", "nope", "2001:db8::/64", "10.0.0.1-x"} {
		if _, err := ParsePool(bad); err == nil {
			t.Errorf("ParsePool(%q) took it", bad)
		}
	}
}

func TestAllocate(t *testing.T) {
	pool, _ := ParsePool("198.51.100.1-198.51.100.2")
	c := &Controller{pool: pool, used: map[netip.Addr]string{}}
	a, err := c.allocate("ns/a", "")
	if err != nil || a.String() != "198.51.100.1" {
		t.Fatalf("first = %v, %v", a, err)
	}
	b, err := c.allocate("ns/b", "198.51.100.1") // taken: falls back to a free one
	if err != nil || b.String() != "198.51.100.2" {
		t.Fatalf("second = %v, %v", b, err)
	}
	if _, err := c.allocate("ns/c", ""); err == nil {
		t.Error("an exhausted pool handed out an address")
	}
	c.releaseAll("ns/a")
	if again, err := c.allocate("ns/c", ""); err != nil || again != a {
		t.Errorf("after release = %v, %v", again, err)
	}
}
