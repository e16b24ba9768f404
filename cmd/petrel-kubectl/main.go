// Command petrel-kubectl is kubectl (k8s.io/kubectl's own command tree)
// pointed at a Petrel cluster's admin kubeconfig; `petrel kubectl` runs it.
// It is a binary of its own because kubectl's packages, linked into petrel,
// made every server and node carry their code and initialisation: about
// 10 MB of resident memory for a command the daemons never run.
package main

import (
	"os"
	"path/filepath"

	kubectlcmd "k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run runs kubectl with the admin kubeconfig of --data-dir (default
// /var/lib/petrel) unless KUBECONFIG or --kubeconfig says otherwise.
func run(args []string) int {
	dataDir := "/var/lib/petrel"
	var rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--data-dir" && i+1 < len(args):
			dataDir = args[i+1]
			i++
		case len(a) > 11 && a[:11] == "--data-dir=":
			dataDir = a[11:]
		default:
			rest = append(rest, a)
		}
	}
	if os.Getenv("KUBECONFIG") == "" {
		os.Setenv("KUBECONFIG", filepath.Join(dataDir, "admin.kubeconfig"))
	}
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	cmd.SetArgs(rest)
	if err := cmd.Execute(); err != nil {
		return 1
	}
	return 0
}
