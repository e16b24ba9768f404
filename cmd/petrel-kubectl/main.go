// Command petrel-kubectl is kubectl (k8s.io/kubectl's own command tree)
// pointed at a Petrel cluster's admin kubeconfig; `petrel kubectl` runs it.
// It is a binary of its own because kubectl's packages, linked into petrel,
// made every server and node carry their code and initialisation: about
// 10 MB of resident memory for a command the daemons never run.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	kubectlcmd "k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run runs kubectl with the admin kubeconfig of --data-dir (default
// /var/lib/petrel) unless KUBECONFIG or --kubeconfig says otherwise.
func run(args []string, stderr io.Writer) int {
	dataDir := "/var/lib/petrel"
	var rest []string
	ownKubeconfig := os.Getenv("KUBECONFIG") != ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--data-dir" && i+1 < len(args):
			dataDir = args[i+1]
			i++
		case strings.HasPrefix(a, "--data-dir="):
			dataDir = strings.TrimPrefix(a, "--data-dir=")
		default:
			if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
				ownKubeconfig = true
			}
			rest = append(rest, a)
		}
	}
	if !ownKubeconfig {
		path := filepath.Join(dataDir, "admin.kubeconfig")
		// Without a kubeconfig kubectl falls back to localhost:8080 and says
		// only that nothing answers there.
		if _, err := os.Stat(path); err != nil && needsCluster(rest) {
			reason := "no admin kubeconfig at " + path
			if !errors.Is(err, fs.ErrNotExist) {
				reason = fmt.Sprintf("cannot read the admin kubeconfig: %v", err)
			}
			fmt.Fprintf(stderr, "petrel kubectl: %s: start a cluster with `petrel up` (it writes one there), "+
				"or pass --data-dir with the data dir of a running cluster (or --kubeconfig FILE)\n", reason)
			return 1
		}
		os.Setenv("KUBECONFIG", path)
	}
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	cmd.SetArgs(rest)
	if err := cmd.Execute(); err != nil {
		return 1
	}
	return 0
}

// needsCluster says whether kubectl args talk to a cluster: help,
// completion, kubeconfig editing and the client's version do not.
func needsCluster(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "--client" || a == "--client=true" {
			return false
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		switch a {
		case "help", "completion", "config", "options", "plugin":
			return false
		}
		return true
	}
	return false // flags alone: kubectl prints its help
}
