package proxy

import "errors"

// idPool hands out small integer ids (rev-NAT ids, backend ids), re-using
// released ones so that the id space does not run out under churn.
type idPool struct {
	max  uint32
	next uint32
	used map[uint32]bool
	free []uint32
}

func newIDPool(max uint32) idPool {
	return idPool{max: max, next: 1, used: map[uint32]bool{}}
}

var errIDsExhausted = errors.New("no free id left in the BPF maps' id space")

func (p *idPool) take() (uint32, error) {
	for len(p.free) > 0 {
		id := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		if !p.used[id] {
			p.used[id] = true
			return id, nil
		}
	}
	for uint64(len(p.used)) < uint64(p.max) {
		id := p.next
		p.next++
		if p.next > p.max || p.next == 0 {
			p.next = 1
		}
		if !p.used[id] {
			p.used[id] = true
			return id, nil
		}
	}
	return 0, errIDsExhausted
}

func (p *idPool) mark(id uint32) { p.used[id] = true }

func (p *idPool) release(id uint32) {
	if p.used[id] {
		delete(p.used, id)
		p.free = append(p.free, id)
	}
}
