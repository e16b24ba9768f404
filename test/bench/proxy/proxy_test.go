package proxy

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The proxy suite reads network_programming_duration_seconds from the
// node's /metrics page and estimates quantiles of what the load added, as
// Prometheus's histogram_quantile would.
func TestScrapeHistogramQuantiles(t *testing.T) {
	page := func(counts ...int) string {
		return fmt.Sprintf(`# HELP network_programming_duration_seconds From an EndpointSlice change to the maps.
# TYPE network_programming_duration_seconds histogram
network_programming_duration_seconds_bucket{le="0.1"} %d
network_programming_duration_seconds_bucket{le="1"} %d
network_programming_duration_seconds_bucket{le="10"} %d
network_programming_duration_seconds_bucket{le="+Inf"} %d
network_programming_duration_seconds_sum 1
network_programming_duration_seconds_count %d
other_bucket{le="1"} 7
`, counts[0], counts[1], counts[2], counts[3], counts[3])
	}
	body := page(1, 1, 1, 1) // the API server's own Service, before the load
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	before, err := scrapeHistogram(context.Background(), srv.URL, "network_programming_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	// The load: 50 under 0.1 s, 50 between 0.1 and 1 s, none above.
	body = page(51, 101, 101, 101)
	after, err := scrapeHistogram(context.Background(), srv.URL, "network_programming_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	load := after.minus(before)
	for _, c := range []struct{ q, want float64 }{{0.5, 0.1}, {0.25, 0.05}, {0.99, 0.982}} {
		if got := load.quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := before.minus(before).quantile(0.5); !math.IsNaN(got) {
		t.Errorf("quantile of no observations = %v, want NaN", got)
	}
	// Observations above the highest finite bound report that bound.
	if got := (histogram{1: 0, math.Inf(1): 3}).quantile(0.5); got != 1 {
		t.Errorf("quantile in +Inf = %v, want 1", got)
	}
	if _, err := scrapeHistogram(context.Background(), srv.URL, "absent_seconds"); err == nil {
		t.Error("a page without the histogram gave no error")
	}
}
