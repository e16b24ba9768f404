package runtime

import (
	"fmt"
	"os/exec"
	"sort"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
)

// ShimRuntime is containerd's runc shim, which runs any OCI runtime that
// speaks runc's command line (crun does) when its options name the binary.
const ShimRuntime = "io.containerd.runc.v2"

// OCI runtimes the node knows by name; these are also the handlers of the
// RuntimeClasses the server creates.
const (
	OCIRuntimeRunc = "runc"
	OCIRuntimeCrun = "crun"
)

// KnownOCIRuntimes are the handler names a RuntimeClass may give.
var KnownOCIRuntimes = []string{OCIRuntimeCrun, OCIRuntimeRunc}

// OCIRuntimes maps handler names to the binaries installed for them.
type OCIRuntimes struct {
	// Default is the handler of pods without a runtimeClassName.
	Default string
	// Paths holds the installed binary of each handler.
	Paths map[string]string
}

// DetectOCIRuntimes finds the installed OCI runtimes and picks the default:
// want when given ("auto" or empty: crun where installed, else runc,
// since crun starts a container in a fraction of runc's time).
func DetectOCIRuntimes(want string) (OCIRuntimes, error) {
	rt := OCIRuntimes{Paths: map[string]string{}}
	for _, name := range KnownOCIRuntimes {
		if p, err := exec.LookPath(name); err == nil {
			rt.Paths[name] = p
		}
	}
	switch want {
	case "", "auto":
		for _, name := range KnownOCIRuntimes {
			if rt.Paths[name] != "" {
				rt.Default = name
				break
			}
		}
		if rt.Default == "" {
			return rt, fmt.Errorf("neither crun nor runc is installed (apt-get install crun runc)")
		}
	default:
		if _, known := rt.Paths[want]; !known {
			if !isKnown(want) {
				return rt, fmt.Errorf("unknown OCI runtime %q: --oci-runtime takes %s or auto", want, strings.Join(KnownOCIRuntimes, ", "))
			}
			return rt, fmt.Errorf("OCI runtime %s is not installed (apt-get install %s)", want, want)
		}
		rt.Default = want
	}
	return rt, nil
}

func isKnown(name string) bool {
	for _, n := range KnownOCIRuntimes {
		if n == name {
			return true
		}
	}
	return false
}

// Installed lists the handlers this node can run, sorted.
func (r OCIRuntimes) Installed() []string {
	out := make([]string, 0, len(r.Paths))
	for n := range r.Paths {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Binary is the binary of handler ("" for the default), or an error that
// says which handlers the node has.
func (r OCIRuntimes) Binary(handler string) (name, path string, err error) {
	if handler == "" {
		handler = r.Default
	}
	if p := r.Paths[handler]; p != "" {
		return handler, p, nil
	}
	return handler, "", fmt.Errorf("this node has no OCI runtime for handler %q (it has %s)", handler, strings.Join(r.Installed(), ", "))
}

// withOCIRuntime has the runc shim run the container with binary.
func withOCIRuntime(binary string) containerd.NewContainerOpts {
	return containerd.WithRuntime(ShimRuntime, &runcoptions.Options{BinaryName: binary})
}
