package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// iperfResult is what the bench reads of `iperf3 -J`.
type iperfResult struct {
	End struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// ErrIperfConnect is iperf3's client not reaching the server (yet).
var ErrIperfConnect = errors.New("iperf3 could not connect")

// ParseIperf reads an iperf3 -J client report: the throughput the receiver
// saw, in Gbit/s.
func ParseIperf(out []byte) (float64, error) {
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("iperf3 output %.200q: %w", out, err)
	}
	if r.Error != "" {
		if strings.Contains(r.Error, "unable to connect") {
			return 0, fmt.Errorf("%w: %s", ErrIperfConnect, r.Error)
		}
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, errors.New("iperf3 reported no received throughput")
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}
