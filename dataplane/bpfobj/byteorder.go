package bpfobj

import (
	"encoding/binary"
	"net/netip"
)

// The maps hold addresses and ports in network byte order, as the BPF
// programs compare them with the socket's; these convert to and from Go.

// AddrKey is an IPv4 address as a map field holds it.
func AddrKey(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// PortKey is a port as a map field holds it.
func PortKey(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// AddrOf reads an IPv4 address from a map field.
func AddrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// PortOf reads a port from a map field.
func PortOf(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}
