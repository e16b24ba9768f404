package dns

import (
	"encoding/binary"
	"strings"
	"sync"
	"unsafe"

	mdns "github.com/miekg/dns"
)

// The fast path answers the common query — one question, class IN, opcode
// QUERY, no EDNS0 or a plain OPT record of version 0 — for names in the cluster zone
// without parsing it into miekg/dns structures and without allocating: the
// answer for each (name, type) is packed once by the full handler, kept in
// the snapshot, and copied into the reply with the query's ID, RD bit and
// question bytes (so the asker's letter case comes back, as the answer's
// owner names point at the question). Negative answers are the question plus
// a pre-packed SOA. Anything else goes to miekg/dns.

const headerLen = 12

// wireCache holds packed answers of one Service's records (or of one
// reverse name, or of the zone's fixed names), keyed by lower-case name and
// type. It is filled on first use and dropped with the records it answers
// from.
type wireCache struct {
	m sync.Map // string(name)+qtype → []byte
}

// fastKey appends name (lower case) and qtype to buf as a map key.
func fastKey(buf []byte, name []byte, qtype uint16) []byte {
	buf = append(buf[:0], name...)
	return append(buf, byte(qtype>>8), byte(qtype))
}

// parsedQuery is what the fast path reads from a packet.
type parsedQuery struct {
	qnameEnd int // offset just after the question's name
	qtype    uint16
	qclass   uint16
	hasOPT   bool
	udpSize  uint16
	do       bool
	end      int // end of the question section
}

// parseQuery reads a plain query; ok is false for anything the fast path
// does not serve. lower receives the name in lower-case presentation form.
func parseQuery(pkt []byte, lower []byte) (q parsedQuery, name []byte, ok bool) {
	if len(pkt) < headerLen+5 {
		return q, nil, false
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	if flags&0x8000 != 0 || (flags>>11)&0xF != mdns.OpcodeQuery {
		return q, nil, false
	}
	if binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 || binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return q, nil, false
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	if arcount > 1 {
		return q, nil, false
	}
	off := headerLen
	name = lower[:0]
	for {
		if off >= len(pkt) {
			return q, nil, false
		}
		l := int(pkt[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(pkt) || len(name)+l+1 > 254 {
			return q, nil, false // compression pointers or malformed: slow path
		}
		for _, c := range pkt[off+1 : off+1+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c == '.' || c == '\\' || c < '!' || c > '~':
				return q, nil, false // needs escaping: slow path
			}
			name = append(name, c)
		}
		name = append(name, '.')
		off += 1 + l
	}
	if len(name) == 0 {
		name = append(name, '.')
	}
	if off+4 > len(pkt) {
		return q, nil, false
	}
	q.qnameEnd = off
	q.qtype = binary.BigEndian.Uint16(pkt[off:])
	q.qclass = binary.BigEndian.Uint16(pkt[off+2:])
	q.end = off + 4
	if q.qclass != mdns.ClassINET || q.qtype == mdns.TypeANY {
		return q, nil, false
	}
	if arcount == 1 {
		// Only a bare OPT of version 0: root name, type 41, no extended
		// rcode, no options. Another version must be answered BADVERS.
		r := pkt[q.end:]
		if len(r) != 11 || r[0] != 0 || binary.BigEndian.Uint16(r[1:]) != mdns.TypeOPT || binary.BigEndian.Uint16(r[9:]) != 0 || r[5] != 0 || r[6] != 0 {
			return q, nil, false
		}
		q.hasOPT = true
		q.udpSize = binary.BigEndian.Uint16(r[3:])
		q.do = r[7]&0x80 != 0
	} else if len(pkt) != q.end {
		return q, nil, false
	}
	return q, name, true
}

// fastScratch is per-goroutine scratch space.
type fastScratch struct {
	lower [256]byte
	key   []byte
}

// FastAnswer writes the reply to pkt into out and returns its length, or 0
// when the slow path must answer.
func (h *Handler) FastAnswer(pkt, out []byte, sc *fastScratch) int {
	q, name, ok := parseQuery(pkt, sc.lower[:])
	if !ok {
		return 0
	}
	snap := h.snap.Load()
	zone := snap.zone
	inZone := len(name) >= len(zone) && string(name[len(name)-len(zone):]) == zone &&
		(len(name) == len(zone) || name[len(name)-len(zone)-1] == '.')
	// The lookups below only read name; a string sharing its bytes spares
	// a copy (and an allocation) per query.
	nameStr := unsafe.String(unsafe.SliceData(name), len(name))
	var ptr *ptrRecord
	if !inZone {
		if ptr = snap.reverse(nameStr); ptr == nil {
			return 0
		}
	}
	limit := mdns.MinMsgSize
	if q.hasOPT {
		limit = int(q.udpSize)
		if limit < mdns.MinMsgSize {
			limit = mdns.MinMsgSize
		}
		if limit > ourUDPSize {
			limit = ourUDPSize
		}
	}
	var body []byte
	nd, wire := snap.lookup(nameStr)
	if ptr != nil {
		wire = &ptr.wire
	}
	if wire != nil {
		switch q.qtype {
		case mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeTXT, mdns.TypeCNAME:
		default:
			return 0 // a bounded cache: only the usual types
		}
		sc.key = fastKey(sc.key, name, q.qtype)
		if v, ok := wire.m.Load(string(sc.key)); ok {
			body = v.([]byte)
		} else {
			body = h.packCanonical(snap, string(name), q.qtype)
			if body == nil {
				return 0
			}
			// An alias of a name in the zone answers with the target's
			// records too, which change with another Service: not kept.
			if nd == nil || nd.cname == "" || !inZoneName(nd.cname, snap.zone) {
				wire.m.Store(string(sc.key), body)
			}
		}
	} else {
		if len(name) > len(zone) && hasLabelSuffix(name, "pod."+zone) || string(name) == zone {
			return 0 // pod names and the apex: slow path
		}
		// Unknown names are not cached (they are unbounded): the negative
		// reply is the question plus the snapshot's packed SOA.
		rcode := mdns.RcodeNameError
		if snap.has(nameStr) {
			rcode = mdns.RcodeSuccess
		}
		return negativeReply(pkt, out, q, snap.soaWire, rcode, limit)
	}
	// body is a packed reply to the lower-case question with ID 0 and RD set,
	// without EDNS. Its question has the same length as the asker's.
	n := len(body)
	if q.hasOPT {
		n += 11
	}
	if n > limit || n > len(out) {
		return 0 // needs truncation: slow path
	}
	copy(out, body)
	copy(out[headerLen:q.end], pkt[headerLen:q.end]) // the asker's question, letter case and all
	out[0], out[1] = pkt[0], pkt[1]
	out[2] = out[2]&^0x01 | pkt[2]&0x01 // RD as asked
	if q.hasOPT {
		writeOPT(out[len(body):n], q.do)
		binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
	}
	return n
}

// packCanonical runs the full handler on the lower-case question and packs
// the reply; nil if the reply is not one the fast path can reuse.
func (h *Handler) packCanonical(snap *Snapshot, name string, qtype uint16) []byte {
	r := new(mdns.Msg)
	r.SetQuestion(name, qtype)
	m := h.answerWith(snap, r, false)
	if m == nil || len(m.Extra) > 0 && m.IsEdns0() != nil {
		return nil
	}
	m.Id = 0
	m.Compress = true
	data, err := m.Pack()
	if err != nil {
		return nil
	}
	return data
}

// inZoneName says whether name (lower case, fully qualified) is zone or
// under it.
func inZoneName(name, zone string) bool {
	return name == zone || strings.HasSuffix(name, "."+zone)
}

func hasLabelSuffix(name []byte, suffix string) bool {
	return len(name) > len(suffix) && string(name[len(name)-len(suffix):]) == suffix && name[len(name)-len(suffix)-1] == '.'
}

// negativeReply writes header + the asker's question + the SOA (+ OPT).
func negativeReply(pkt, out []byte, q parsedQuery, soa []byte, rcode int, limit int) int {
	n := q.end + len(soa)
	if q.hasOPT {
		n += 11
	}
	if n > limit || n > len(out) {
		return 0
	}
	copy(out, pkt[:q.end])
	out[2] = 0x80 | 0x04 | pkt[2]&0x01 // QR, AA, RD as asked
	out[3] = byte(rcode)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 1)
	binary.BigEndian.PutUint16(out[10:], 0)
	copy(out[q.end:], soa)
	if q.hasOPT {
		writeOPT(out[q.end+len(soa):n], q.do)
		binary.BigEndian.PutUint16(out[10:], 1)
	}
	return n
}

// packSOA packs the zone's SOA record uncompressed, for negative replies.
func packSOA(s *Snapshot) []byte {
	buf := make([]byte, 512)
	n, err := mdns.PackRR(s.soa(), buf, 0, nil, false)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// writeOPT writes an 11-byte OPT record advertising our UDP size, echoing DO.
func writeOPT(opt []byte, do bool) {
	opt[0] = 0
	binary.BigEndian.PutUint16(opt[1:], mdns.TypeOPT)
	binary.BigEndian.PutUint16(opt[3:], ourUDPSize)
	opt[5], opt[6], opt[7], opt[8] = 0, 0, 0, 0
	if do {
		opt[7] = 0x80
	}
	binary.BigEndian.PutUint16(opt[9:], 0)
}
