// Package ipam hands out pod addresses from a node's podCIDR, one file per
// address under a directory, guarded by a file lock so that concurrent CNI
// calls (separate processes) never hand one out twice. An allocation names
// its container and interface, so ADD is idempotent after a crash and DEL
// and GC release exactly what they should.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Store allocates addresses of Range in Dir.
type Store struct {
	Dir   string
	Range netip.Prefix
}

// Owner is who holds an address: a container and its interface.
type Owner struct{ ContainerID, IfName string }

func (o Owner) String() string { return o.ContainerID + "\n" + o.IfName }

// lock takes the store's lock until the returned function is called.
func (s *Store) lock() (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create IPAM directory %s: %w", s.Dir, err)
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open IPAM lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock IPAM: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// entries reads every allocation.
func (s *Store) entries() (map[netip.Addr]Owner, error) {
	files, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("read IPAM directory: %w", err)
	}
	out := map[netip.Addr]Owner{}
	for _, f := range files {
		a, err := netip.ParseAddr(f.Name())
		if err != nil {
			continue // the lock file
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, f.Name()))
		if err != nil {
			return nil, err
		}
		id, ifname, _ := strings.Cut(string(b), "\n")
		out[a] = Owner{ContainerID: id, IfName: ifname}
	}
	return out, nil
}

// ErrFull is returned when every address of the range is taken.
var ErrFull = errors.New("the node's pod address range is full")

// Allocate returns the owner's address, taking a free one if it has none.
// The first address (the network) and the second (kept for the node) and
// the last (broadcast) are never handed out.
func (s *Store) Allocate(o Owner) (netip.Addr, error) {
	unlock, err := s.lock()
	if err != nil {
		return netip.Addr{}, err
	}
	defer unlock()
	taken, err := s.entries()
	if err != nil {
		return netip.Addr{}, err
	}
	for a, owner := range taken {
		if owner == o {
			return a, nil
		}
	}
	first := s.Range.Masked().Addr().Next().Next()
	for a := first; s.Range.Contains(a.Next()); a = a.Next() {
		if _, used := taken[a]; used {
			continue
		}
		if err := os.WriteFile(filepath.Join(s.Dir, a.String()), []byte(o.String()), 0o600); err != nil {
			return netip.Addr{}, fmt.Errorf("record %s: %w", a, err)
		}
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%w (%s)", ErrFull, s.Range)
}

// Lookup returns the owner's address, if it has one.
func (s *Store) Lookup(o Owner) (netip.Addr, bool, error) {
	unlock, err := s.lock()
	if err != nil {
		return netip.Addr{}, false, err
	}
	defer unlock()
	taken, err := s.entries()
	if err != nil {
		return netip.Addr{}, false, err
	}
	for a, owner := range taken {
		if owner == o {
			return a, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// Release frees the owner's address; releasing nothing is not an error.
func (s *Store) Release(o Owner) error {
	return s.releaseWhere(func(owner Owner, _ netip.Addr) bool { return owner == o })
}

// ReleaseExcept frees every address whose owner is not in keep, and returns
// what it freed.
func (s *Store) ReleaseExcept(keep map[Owner]bool) (map[Owner]netip.Addr, error) {
	freed := map[Owner]netip.Addr{}
	err := s.releaseWhere(func(owner Owner, a netip.Addr) bool {
		if keep[owner] {
			return false
		}
		freed[owner] = a
		return true
	})
	return freed, err
}

func (s *Store) releaseWhere(match func(Owner, netip.Addr) bool) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	taken, err := s.entries()
	if err != nil {
		return err
	}
	for a, owner := range taken {
		if match(owner, a) {
			if err := os.Remove(filepath.Join(s.Dir, a.String())); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("release %s: %w", a, err)
			}
		}
	}
	return nil
}

// Free counts the addresses left.
func (s *Store) Free() (int, error) {
	unlock, err := s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	taken, err := s.entries()
	if err != nil {
		return 0, err
	}
	size := 1 << (32 - s.Range.Bits())
	return size - 3 - len(taken), nil
}
