// Command build writes Petrel's test images as OCI archives (`make images`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/petrel-project/petrel/test/images"
)

func main() {
	out := flag.String("out", "test/images/out", "directory for the archives")
	flag.Parse()
	path, err := images.BuildTestServer(context.Background(), *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s (import with: petrelctl image import %s)\n", images.TestServer, path, path)
}
