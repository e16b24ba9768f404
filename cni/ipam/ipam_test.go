package ipam

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
)

func TestAllocateReleaseGC(t *testing.T) {
	s := &Store{Dir: t.TempDir(), Range: netip.MustParsePrefix("10.250.9.0/29")} // .2 .. .6
	a := Owner{"c1", "eth0"}
	ip, err := s.Allocate(a)
	if err != nil || ip.String() != "10.250.9.2" {
		t.Fatalf("first = %v, %v", ip, err)
	}
	if again, _ := s.Allocate(a); again != ip {
		t.Errorf("ADD after a crash must get the same address: %v then %v", ip, again)
	}
	var wg sync.WaitGroup
	got := make(chan netip.Addr, 10)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ip, err := s.Allocate(Owner{string(rune('a' + i)), "eth0"}); err == nil {
				got <- ip
			}
		}()
	}
	wg.Wait()
	close(got)
	seen := map[netip.Addr]bool{ip: true}
	for ip := range got {
		if seen[ip] {
			t.Fatalf("%v handed out twice", ip)
		}
		seen[ip] = true
	}
	if _, err := s.Allocate(Owner{"full", "eth0"}); !errors.Is(err, ErrFull) {
		t.Errorf("a full range: %v", err)
	}
	if n, _ := s.Free(); n != 0 {
		t.Errorf("free = %d", n)
	}
	if err := s.Release(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(a); err != nil {
		t.Errorf("releasing twice: %v", err)
	}
	if _, ok, _ := s.Lookup(a); ok {
		t.Error("released owner still has an address")
	}
	freed, err := s.ReleaseExcept(map[Owner]bool{{"a", "eth0"}: true})
	if err != nil || len(freed) != 3 {
		t.Errorf("GC freed %v (%v), want the 3 others", freed, err)
	}
	if n, _ := s.Free(); n != 4 {
		t.Errorf("free after GC = %d, want 4", n)
	}
}
