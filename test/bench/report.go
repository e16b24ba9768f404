// Package bench is Petrel's benchmark harness: each suite starts what it
// measures, runs its baselines in the same run, and reports rows in the format
// of ARCHITECTURE.md (JSON, or a table).
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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

func f(v float64) *float64 { return &v }

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
	res := Result{Name: name, Unit: unit, Value: round(value), Baseline: baseline, BaselineValue: f(round(baselineValue)),
		Ratio: f(round(ratio)), Better: better}
	if goal > 0 { // 0: a comparison with no goal set
		res.Goal = f(goal)
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
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Name, res.Value, res.Unit, base, bv, ratio, goal, met(res))
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

// met says whether a row reaches its goal: ratios compare the ratio, absolute
// figures the value.
func met(r Result) string {
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

// percentile returns the p-th percentile (0..100) of durations.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// dropPageCache evicts a binary's pages from the page cache (all but those
// a running process maps), so the process under test maps its code as it
// would after a reboot. A binary the Go linker has just written sits in the
// page cache in large folios, which the kernel maps 2 MB at a time: the
// same code in use then shows about 30 MB more RSS, a figure of how the
// file was last written rather than of the server. The bench reports the
// file-backed and anonymous parts apart as well.
func dropPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("dropping %s from the page cache: %w", path, err)
	}
	return nil
}

// rssMB reads a process's resident set size.
func rssMB(pid int) (float64, error) { return procStatusMB(pid, "VmRSS") }

// procStatusMB reads one of /proc/<pid>/status's kB fields, in MB.
func procStatusMB(pid int, field string) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb float64
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%f kB", &kb)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s for pid %d", field, pid)
}
