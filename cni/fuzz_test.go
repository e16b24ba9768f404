package cni

import "testing"

// FuzzParseConfig: the plugin reads its configuration from the container
// runtime; any input gives a checked configuration or an error, never a
// panic or a configuration without a pod range.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"petrel","type":"petrel-cni","podCIDR":"10.244.0.0/24"}`))
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"petrel","type":"petrel-cni","podCIDR":"fd00::/64","mtu":1450,"dataDir":"/tmp/x","pinDir":"/sys/fs/bpf/p"}`))
	f.Add([]byte(`{"podCIDR":"10.244.0.0/33"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"podCIDR":"10.244.0.0/24","mtu":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if c.DataDir == "" || c.MTU < 68 || c.MTU > 65535 || c.Store() == nil {
			t.Fatalf("accepted a configuration without its defaults: %+v", c)
		}
	})
}
