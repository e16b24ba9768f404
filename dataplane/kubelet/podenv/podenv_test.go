package podenv

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"plain":        "plain",
		"$(A)":         "1",
		"x$(A)y$(B)z":  "x1ytwoz",
		"$$(A)":        "$(A)",
		"$(MISSING)":   "$(MISSING)",
		"$(A":          "$(A",
		"cost $5":      "cost $5",
		"trailing $":   "trailing $",
		"$(A)$(A)$$$$": "11$$",
	} {
		if got := Expand(in, vars); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExpandSubPath(t *testing.T) {
	vars := map[string]string{"POD": "web-0", "EMPTY": "", "UP": "..", "ABS": "/tmp"}
	for expr, want := range map[string]string{
		"$(POD)":         "web-0",
		"logs/$(POD)":    "logs/web-0",
		"$(UNSET)/x":     "$(UNSET)/x",
		"a/$(EMPTY)b":    "a/b",
		"$(POD)..suffix": "web-0..suffix",
	} {
		got, err := SubPath(expr, vars)
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", expr, got, err, want)
		}
	}
	for _, expr := range []string{"$(UP)", "$(POD)/$(UP)/x", "$(ABS)", "$(EMPTY)/$(POD)"} {
		if got, err := SubPath(expr, vars); err == nil {
			t.Errorf("%s: %q, want an error", expr, got)
		} else if !strings.Contains(err.Error(), expr) {
			t.Errorf("%s: error %q does not name the expression", expr, err)
		}
	}
}
