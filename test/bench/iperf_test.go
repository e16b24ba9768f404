package bench

import (
	"errors"
	"testing"
)

// Trimmed from `iperf3 -c ... -J` (3.12).
const iperfOK = `{"start": {"connected": [{"socket": 5}]}, "intervals": [],
 "end": {"streams": [], "sum_sent": {"start": 0, "end": 5.0002, "seconds": 5.0002, "bytes": 20453785600,
   "bits_per_second": 32718956946.342648, "retransmits": 3, "sender": true},
  "sum_received": {"start": 0, "end": 5.00036, "seconds": 5.00036, "bytes": 20453785600,
   "bits_per_second": 32714279819.265068, "sender": true},
  "cpu_utilization_percent": {"host_total": 99.1}}}`

const iperfRefused = `{"start": {"connected": []}, "intervals": [], "end": {},
 "error": "unable to connect to server: Connection refused"}`

func TestParseIperf(t *testing.T) {
	g, err := ParseIperf([]byte(iperfOK))
	if err != nil {
		t.Fatal(err)
	}
	if g < 32.71 || g > 32.72 {
		t.Errorf("throughput %v Gbit/s, want the receiver's 32.714", g)
	}
	if _, err := ParseIperf([]byte(iperfRefused)); !errors.Is(err, ErrIperfConnect) {
		t.Errorf("refused: %v, want ErrIperfConnect (the client retries)", err)
	}
	for _, bad := range []string{`{"end": {}}`, `{"error": "the server is busy running a test"}`, `iperf3: error`} {
		if _, err := ParseIperf([]byte(bad)); err == nil || errors.Is(err, ErrIperfConnect) {
			t.Errorf("ParseIperf(%q) = %v, want a failure that is not retried", bad, err)
		}
	}
}
