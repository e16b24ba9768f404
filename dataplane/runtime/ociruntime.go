package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
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
	// SpecVersions holds the OCI spec version each binary writes itself
	// (`crun spec`): containerd's spec names the newest version, which
	// older crun refuses ("unknown version specified") though it uses
	// nothing newer.
	SpecVersions map[string]string
	// Unusable says why an installed runtime cannot run containers here.
	Unusable map[string]string
}

// DetectOCIRuntimes finds the installed OCI runtimes and picks the default:
// want when given ("auto" or empty: crun where installed, else runc,
// since crun starts a container in a fraction of runc's time).
func DetectOCIRuntimes(want string) (OCIRuntimes, error) {
	rt := OCIRuntimes{Paths: map[string]string{}, SpecVersions: map[string]string{}, Unusable: map[string]string{}}
	for _, name := range KnownOCIRuntimes {
		if p, err := exec.LookPath(name); err == nil {
			if name == OCIRuntimeCrun {
				if err := PrepareCrun(); err != nil {
					rt.Unusable[name] = err.Error()
					slog.Warn("runtime: crun is installed but cannot run containers here", "err", err)
					continue
				}
			}
			rt.Paths[name] = p
			if v, err := specVersion(p); err == nil {
				rt.SpecVersions[name] = v
			}
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
			if why := rt.Unusable[want]; why != "" {
				return rt, fmt.Errorf("OCI runtime %s: %s", want, why)
			}
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

// Binary is the binary of handler ("" for the default) and the spec
// version it takes, or an error that says which handlers the node has.
func (r OCIRuntimes) Binary(handler string) (name, path, specVersion string, err error) {
	if handler == "" {
		handler = r.Default
	}
	if p := r.Paths[handler]; p != "" {
		return handler, p, r.SpecVersions[handler], nil
	}
	if why := r.Unusable[handler]; why != "" {
		return handler, "", "", fmt.Errorf("OCI runtime %s cannot run containers on this node: %s", handler, why)
	}
	return handler, "", "", fmt.Errorf("this node has no OCI runtime for handler %q (it has %s)", handler, strings.Join(r.Installed(), ", "))
}

// specVersion is the ociVersion of the spec the runtime binary writes
// with `spec`, in a directory of its own.
func specVersion(binary string) (string, error) {
	dir, err := os.MkdirTemp("", "petrel-ocispec-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(binary, "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s spec: %w: %s", binary, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return "", err
	}
	var spec struct {
		Version string `json:"ociVersion"`
	}
	if err := json.Unmarshal(b, &spec); err != nil || spec.Version == "" {
		return "", fmt.Errorf("%s spec wrote no ociVersion: %v", binary, err)
	}
	return spec.Version, nil
}

// withSpecVersion names the spec version the runtime takes.
func withSpecVersion(v string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Version = v
		return nil
	}
}

// withOCIRuntime has the runc shim run the container with binary.
func withOCIRuntime(binary string) containerd.NewContainerOpts {
	return containerd.WithRuntime(ShimRuntime, &runcoptions.Options{BinaryName: binary})
}
