// Command petrel-logger is the containerd logging binary of Petrel's pods:
// a container's shim starts it with the container's stdout and stderr, and
// it writes them to the pod's log file in the CRI format that `kubectl logs`
// reads. It is small on purpose: one runs beside every container.
package main

import (
	"fmt"
	"os"

	"github.com/petrel-project/petrel/dataplane/containerlog"
)

func main() {
	if err := containerlog.RunLogger(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
