package dns

import (
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// TTL of the cluster's own records, as CoreDNS's kubernetes plugin uses.
const TTL = 5

// ourUDPSize is the EDNS0 buffer size we advertise and answer within.
const ourUDPSize = 1232

// Handler answers DNS queries from the current snapshot and forwards the rest.
type Handler struct {
	snap    atomic.Pointer[Snapshot]
	forward *Forwarder
	metrics *Metrics
}

// NewHandler returns a handler with an empty snapshot for zone.
func NewHandler(zone string, fwd *Forwarder, m *Metrics) *Handler {
	h := &Handler{forward: fwd, metrics: m}
	h.snap.Store(NewSnapshot(zone))
	return h
}

// Swap installs another snapshot (Watch installs one and changes it in
// place).
func (h *Handler) Swap(s *Snapshot) { h.snap.Store(s) }

// Snapshot returns the snapshot in use.
func (h *Handler) Snapshot() *Snapshot { return h.snap.Load() }

// ServeDNS implements miekg/dns's Handler.
func (h *Handler) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	start := time.Now()
	udp := w.LocalAddr() != nil && w.LocalAddr().Network() == "udp"
	m := h.Answer(r, udp)
	if m == nil {
		return // dropped
	}
	_ = w.WriteMsg(m)
	if h.metrics != nil {
		qtype := "other"
		if len(r.Question) == 1 {
			qtype = mdns.TypeToString[r.Question[0].Qtype]
		}
		h.metrics.observe(qtype, mdns.RcodeToString[m.Rcode], time.Since(start))
	}
}

// Answer builds the response to r (nil means: drop it). udp says whether the
// answer must fit the client's UDP size.
func (h *Handler) Answer(r *mdns.Msg, udp bool) *mdns.Msg {
	return h.answerWith(h.snap.Load(), r, udp)
}

func (h *Handler) answerWith(snap *Snapshot, r *mdns.Msg, udp bool) *mdns.Msg {
	if r.Response {
		return nil // never answer answers
	}
	m := new(mdns.Msg)
	if r.Opcode != mdns.OpcodeQuery {
		m.SetRcode(r, mdns.RcodeNotImplemented)
		return m
	}
	if len(r.Question) != 1 {
		m.SetRcode(r, mdns.RcodeFormatError)
		return m
	}
	if m := checkEDNS(r); m != nil {
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	inZone := name == snap.zone || strings.HasSuffix(name, "."+snap.zone)
	var ptr *ptrRecord
	if !inZone {
		ptr = snap.reverse(name)
	}
	isPTR := ptr != nil
	if !inZone && !isPTR {
		if h.forward == nil {
			m.SetRcode(r, mdns.RcodeServerFailure)
			return m
		}
		return finish(r, h.forward.Forward(r), udp)
	}
	m.SetReply(r)
	m.Authoritative = true
	switch {
	case q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY:
		m.Rcode = mdns.RcodeRefused
		return finish(r, m, udp)
	case q.Qtype == mdns.TypeANY:
		// RFC 8482: a minimal answer instead of everything.
		m.Answer = append(m.Answer, &mdns.HINFO{Hdr: hdr(q.Name, mdns.TypeHINFO), Cpu: "RFC8482"})
		return finish(r, m, udp)
	}
	if isPTR {
		if q.Qtype == mdns.TypePTR {
			m.Answer = append(m.Answer, &mdns.PTR{Hdr: hdr(q.Name, mdns.TypePTR), Ptr: ptr.target})
		} else {
			m.Ns = append(m.Ns, snap.soa())
		}
		return finish(r, m, udp)
	}
	if name == snap.zone {
		switch q.Qtype {
		case mdns.TypeSOA:
			soa := snap.soa()
			soa.Hdr.Name = q.Name
			m.Answer = append(m.Answer, soa)
		case mdns.TypeNS:
			m.Answer = append(m.Answer, &mdns.NS{Hdr: hdr(q.Name, mdns.TypeNS), Ns: "ns.dns." + snap.zone})
		default:
			m.Ns = append(m.Ns, snap.soa())
		}
		return finish(r, m, udp)
	}
	if ip := snap.podIP(name); ip != nil {
		switch {
		case q.Qtype == mdns.TypeA && ip.To4() != nil:
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(q.Name, mdns.TypeA), A: ip.To4()})
		case q.Qtype == mdns.TypeAAAA && ip.To4() == nil:
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(q.Name, mdns.TypeAAAA), AAAA: ip})
		default:
			m.Ns = append(m.Ns, snap.soa())
		}
		return finish(r, m, udp)
	}
	n, _ := snap.lookup(name)
	if n == nil {
		if !snap.has(name) {
			m.Rcode = mdns.RcodeNameError
		}
		m.Ns = append(m.Ns, snap.soa())
		return finish(r, m, udp)
	}
	owner := q.Name
	if n.cname != "" {
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: hdr(owner, mdns.TypeCNAME), Target: n.cname})
		if q.Qtype == mdns.TypeCNAME {
			return finish(r, m, udp)
		}
		// A cluster-internal target is resolved in the same answer.
		target, _ := snap.lookup(n.cname)
		if target == nil {
			return finish(r, m, udp)
		}
		owner, n = n.cname, target
	}
	added := addRecords(m, owner, n, q.Qtype, snap)
	if !added && len(m.Answer) == 0 {
		m.Ns = append(m.Ns, snap.soa())
	}
	return finish(r, m, udp)
}

// addRecords appends n's records of qtype; it reports whether there were any.
func addRecords(m *mdns.Msg, owner string, n *node, qtype uint16, snap *Snapshot) bool {
	before := len(m.Answer)
	switch qtype {
	case mdns.TypeA:
		for _, ip := range n.a {
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(owner, mdns.TypeA), A: ip})
		}
	case mdns.TypeAAAA:
		for _, ip := range n.aaaa {
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(owner, mdns.TypeAAAA), AAAA: ip})
		}
	case mdns.TypeSRV:
		weight := uint16(100)
		if len(n.srv) > 0 {
			weight = uint16(100 / len(n.srv))
		}
		for _, s := range n.srv {
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(owner, mdns.TypeSRV), Priority: 0, Weight: weight, Port: s.port, Target: s.target})
			if t, _ := snap.lookup(s.target); t != nil {
				for _, ip := range t.a {
					m.Extra = append(m.Extra, &mdns.A{Hdr: hdr(s.target, mdns.TypeA), A: ip})
				}
				for _, ip := range t.aaaa {
					m.Extra = append(m.Extra, &mdns.AAAA{Hdr: hdr(s.target, mdns.TypeAAAA), AAAA: ip})
				}
			}
		}
	case mdns.TypeTXT:
		if len(n.txt) > 0 {
			m.Answer = append(m.Answer, &mdns.TXT{Hdr: hdr(owner, mdns.TypeTXT), Txt: n.txt})
		}
	}
	return len(m.Answer) > before
}

func hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: TTL}
}

// checkEDNS answers what RFC 6891 makes an error before any lookup or
// forwarding (§6.1.1: more than one OPT is FORMERR; §6.1.3: an OPT of a
// version above ours, 0, is BADVERS with an OPT of version 0), or returns nil.
// The fast path hands such queries here: its parser takes only one OPT of
// version 0.
func checkEDNS(r *mdns.Msg) *mdns.Msg {
	var opt *mdns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			if opt != nil {
				m := new(mdns.Msg)
				m.SetRcode(r, mdns.RcodeFormatError)
				return m
			}
			opt = o
		}
	}
	if opt == nil || opt.Version() == 0 {
		return nil
	}
	m := new(mdns.Msg)
	m.SetRcode(r, mdns.RcodeBadVers)
	// SetEdns0's OPT is version 0; Pack moves the rcode's upper bits into it.
	m.SetEdns0(ourUDPSize, opt.Do())
	return m
}

// finish applies EDNS0 and truncation for the transport.
func finish(r, m *mdns.Msg, udp bool) *mdns.Msg {
	if m == nil {
		return nil
	}
	m.Id = r.Id
	size := mdns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		if m.IsEdns0() == nil {
			m.SetEdns0(ourUDPSize, opt.Do())
		}
		if s := int(opt.UDPSize()); s > size {
			size = s
		}
		if size > ourUDPSize {
			size = ourUDPSize
		}
	}
	if udp {
		m.Truncate(size)
	} else {
		m.Truncate(mdns.MaxMsgSize)
	}
	return m
}
