package dns

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// batchSize is how many datagrams one recvmmsg/sendmmsg call moves.
const batchSize = 32

// udpServer serves DNS over UDP on SO_REUSEPORT sockets, one reader per CPU,
// each moving packets in batches (recvmmsg/sendmmsg) and answering on the fast
// path where it can.
type udpServer struct {
	conns []*net.UDPConn
	h     *Handler
	wg    sync.WaitGroup
}

func listenReusePort(addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// listenUDP opens one socket per CPU on addr (the first picks the port when
// addr's port is 0).
func listenUDP(addr string, h *Handler) (*udpServer, error) {
	first, err := listenReusePort(addr)
	if err != nil {
		return nil, err
	}
	s := &udpServer{conns: []*net.UDPConn{first}, h: h}
	bound := first.LocalAddr().String()
	for i := 1; i < runtime.GOMAXPROCS(0); i++ {
		c, err := listenReusePort(bound)
		if err != nil {
			break // one socket still serves
		}
		s.conns = append(s.conns, c)
	}
	for _, c := range s.conns {
		s.wg.Add(1)
		go s.serve(c)
	}
	return s, nil
}

func (s *udpServer) addr() string { return s.conns[0].LocalAddr().String() }

func (s *udpServer) close() {
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.wg.Wait()
}

func (s *udpServer) serve(conn *net.UDPConn) {
	defer s.wg.Done()
	pc := ipv4.NewPacketConn(conn)
	in := make([]ipv4.Message, batchSize)
	out := make([]ipv4.Message, batchSize)
	outBufs := make([][]byte, batchSize)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)}
		outBufs[i] = make([]byte, 4096)
		out[i].Buffers = [][]byte{nil}
	}
	var sc fastScratch
	m := s.h.metrics
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		start := time.Now()
		w := 0
		for i := 0; i < n; i++ {
			pkt := in[i].Buffers[0][:in[i].N]
			l := s.h.FastAnswer(pkt, outBufs[w], &sc)
			if l == 0 {
				l = s.h.slowAnswer(pkt, outBufs[w])
				if l == 0 {
					continue // dropped
				}
			}
			out[w].Buffers[0] = outBufs[w][:l]
			out[w].Addr = in[i].Addr
			if m != nil {
				m.count(outBufs[w][:l])
			}
			w++
		}
		for sent := 0; sent < w; {
			k, err := pc.WriteBatch(out[sent:w], 0)
			if err != nil {
				break
			}
			sent += k
		}
		if m != nil && w > 0 {
			m.latency.Observe(time.Since(start).Seconds() / float64(w))
		}
	}
}

// slowAnswer parses pkt with miekg/dns and answers through the full handler.
func (h *Handler) slowAnswer(pkt, out []byte) int {
	r := new(mdns.Msg)
	if err := r.Unpack(pkt); err != nil {
		// A readable header gets FORMERR, as miekg/dns's server does; the rest
		// is dropped.
		if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
			return 0
		}
		hdr := new(mdns.Msg)
		hdr.Id = uint16(pkt[0])<<8 | uint16(pkt[1])
		hdr.Response = true
		hdr.Rcode = mdns.RcodeFormatError
		data, err := hdr.PackBuffer(out)
		if err != nil {
			return 0
		}
		return copyOut(out, data)
	}
	m := h.Answer(r, true)
	if m == nil {
		return 0
	}
	data, err := m.PackBuffer(out)
	if err != nil {
		return 0
	}
	return copyOut(out, data)
}

func copyOut(out, data []byte) int {
	if len(data) > len(out) {
		return 0
	}
	if &data[0] != &out[0] {
		copy(out, data)
	}
	return len(data)
}

// count records one reply by query type and rcode, read from the packet.
func (m *Metrics) count(reply []byte) {
	if len(reply) < headerLen {
		return
	}
	rcode := int(reply[3] & 0x0F)
	// An extended rcode (BADVERS) keeps its upper eight bits in the OPT,
	// which every reply of ours puts last, without options: 11 bytes, root
	// name, type 41, the bits in the TTL's first byte, rdlength 0.
	arcount := int(reply[10])<<8 | int(reply[11])
	if n := len(reply); arcount > 0 && n >= headerLen+11 {
		if opt := reply[n-11:]; opt[0] == 0 && opt[1] == 0 && opt[2] == byte(mdns.TypeOPT) && opt[9] == 0 && opt[10] == 0 {
			rcode |= int(opt[5]) << 4
		}
	}
	qtype := uint16(0)
	// The question's type follows its name.
	off := headerLen
	for off < len(reply) && reply[off] != 0 {
		if reply[off]&0xC0 != 0 {
			off++
			break
		}
		off += int(reply[off]) + 1
	}
	off++
	if off+2 <= len(reply) {
		qtype = uint16(reply[off])<<8 | uint16(reply[off+1])
	}
	m.counter(qtype, rcode).Inc()
}

var trackedTypes = []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeTXT, mdns.TypeCNAME, mdns.TypeSOA}

// counter returns the pre-resolved counter for (qtype, rcode), so that the
// answer path does no label lookups.
func (m *Metrics) counter(qtype uint16, rcode int) prometheus.Counter {
	ti := len(trackedTypes)
	for i, t := range trackedTypes {
		if t == qtype {
			ti = i
			break
		}
	}
	if rcode > 5 {
		rcode = 6
	}
	m.countersOnce.Do(m.initCounters)
	return m.counters[ti][rcode]
}

func (m *Metrics) initCounters() {
	for ti := 0; ti <= len(trackedTypes); ti++ {
		typ := "other"
		if ti < len(trackedTypes) {
			typ = mdns.TypeToString[trackedTypes[ti]]
		}
		for rc := 0; rc <= 6; rc++ {
			name := "other"
			if rc <= 5 {
				name = mdns.RcodeToString[rc]
			}
			m.counters[ti][rc] = m.requests.WithLabelValues(typ, name)
		}
	}
}
