// Package bench is Petrel's benchmark harness: each suite starts what it
// measures, runs its baselines in the same run, and reports rows in the format
// of ARCHITECTURE.md (JSON, or a table).
//
// This package holds what the suites share: the report, the servers and
// clusters they start, and the dataplane worker; the suites are its
// sub-packages (api, dataplane, dns, ha, ingress, network, pods, policy,
// proxy, scheduler), each with a Run that petrelctl bench calls.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// Result is one measured figure.
type Result struct {
	Name          string   `json:"name"`
	Unit          string   `json:"unit"`
	Value         float64  `json:"value"`
	Baseline      string   `json:"baseline,omitempty"`
	BaselineValue *float64 `json:"baseline_value,omitempty"`
	Ratio         *float64 `json:"ratio,omitempty"`
	Better        string   `json:"better"`
	Goal          *float64 `json:"goal,omitempty"`
}

// Report is one suite's output.
type Report struct {
	Suite   string   `json:"suite"`
	Machine string   `json:"machine"`
	Started string   `json:"started"`
	Results []Result `json:"results"`
	// Notes say what the run could not measure here and why, and where it
	// left what it saved.
	Notes []string `json:"notes,omitempty"`
}

// NewReport starts a report for suite.
func NewReport(suite string) *Report {
	return &Report{Suite: suite, Machine: Machine(), Started: time.Now().UTC().Format(time.RFC3339)}
}

// Machine describes this machine: cores and kernel.
func Machine() string {
	var u unix.Utsname
	kernel := "unknown kernel"
	if unix.Uname(&u) == nil {
		kernel = "Linux " + strings.TrimRight(string(u.Release[:]), "\x00")
	}
	return fmt.Sprintf("%d cores, %s", runtime.NumCPU(), kernel)
}

// Goal is a row's goal for Add, which takes a pointer so that a row can have
// none.
func Goal(v float64) *float64 { return &v }

// Add records an absolute figure with an optional goal.
func (r *Report) Add(name, unit string, value float64, better string, goal *float64) {
	r.Results = append(r.Results, Result{Name: name, Unit: unit, Value: round(value), Better: better, Goal: goal})
}

// Note records a remark printed under the table.
func (r *Report) Note(note string) { r.Notes = append(r.Notes, note) }

// AddRatio records a figure next to its baseline from the same run.
func (r *Report) AddRatio(name, unit string, value float64, baseline string, baselineValue float64, better string, goal float64) {
	ratio := 0.0
	if baselineValue != 0 {
		ratio = value / baselineValue
		if better == "lower" && value != 0 {
			ratio = baselineValue / value
		}
	}
	res := Result{Name: name, Unit: unit, Value: round(value), Baseline: baseline, BaselineValue: Goal(round(baselineValue)),
		Ratio: Goal(round(ratio)), Better: better}
	if goal > 0 { // 0: a comparison with no goal set
		res.Goal = Goal(goal)
	}
	r.Results = append(r.Results, res)
}

func round(v float64) float64 {
	switch {
	case v >= 100:
		return float64(int64(v + 0.5))
	default:
		return float64(int64(v*1000+0.5)) / 1000
	}
}

// Write prints the report as JSON or as a table.
func (r *Report) Write(w io.Writer, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "suite %s on %s, started %s\n", r.Suite, r.Machine, r.Started)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVALUE\tUNIT\tBASELINE\tBASELINE VALUE\tRATIO\tGOAL\tMET")
	for _, res := range r.Results {
		base, bv, ratio, goal := "-", "-", "-", "-"
		if res.Baseline != "" {
			base = res.Baseline
		}
		if res.BaselineValue != nil {
			bv = fmt.Sprint(*res.BaselineValue)
		}
		if res.Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *res.Ratio)
		}
		if res.Goal != nil {
			goal = fmt.Sprint(*res.Goal)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Name, res.Value, res.Unit, base, bv, ratio, goal, res.Met())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		if _, err := fmt.Fprintf(w, "note: %s\n", n); err != nil {
			return err
		}
	}
	return nil
}

// Met says whether a row reaches its goal: ratios compare the ratio, absolute
// figures the value.
func (r Result) Met() string {
	if r.Goal == nil {
		return "-"
	}
	v := r.Value
	if r.Ratio != nil {
		v = *r.Ratio
		if v >= *r.Goal {
			return "yes"
		}
		return "no"
	}
	if (r.Better == "lower" && v <= *r.Goal) || (r.Better == "higher" && v >= *r.Goal) {
		return "yes"
	}
	return "no"
}

// Percentile returns the p-th percentile (0..100) of durations.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// Millis is d in milliseconds with microsecond precision, the unit of the
// reports' latency rows.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Median is the median of v, 0 for none: suites measure a figure over
// rounds and report the median, which one disturbed round does not move.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
