package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/petrel-project/petrel/dataplane/runtime"
)

// nodeHint says what to do when the node's containerd cannot be reached.
const nodeHint = "is `petrel up` or `petrel node` running? pass --data-dir or --containerd-address"

func imageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Images in the node's containerd"}
	var dataDir, address string
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/petrel", "the node's data directory (its containerd socket is under containerd/)")
	cmd.PersistentFlags().StringVar(&address, "containerd-address", "", "containerd socket (default <data-dir>/containerd/containerd.sock)")
	connect := func(ctx context.Context) (*runtime.Containerd, error) { return connectNode(ctx, dataDir, address) }
	imp := &cobra.Command{Use: "import FILE.tar...", Short: "Load OCI or Docker image archives into the node's containerd, ready for pods",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			c, err := connect(ctx)
			if err != nil {
				return err
			}
			defer c.Stop()
			for _, a := range args {
				fmt.Fprintf(os.Stderr, "importing %s ...\n", a)
				names, err := runtime.Import(ctx, c.Client, a)
				if err != nil {
					return err
				}
				fmt.Printf("imported %s\n", strings.Join(names, ", "))
			}
			return nil
		}}
	var output string
	list := &cobra.Command{Use: "list", Short: "List the node's images (a table, or -o json)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o must be table or json, not %q", output)
			}
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Stop()
			imgs, err := runtime.NodeImages(cmd.Context(), c.Client)
			if err != nil {
				return err
			}
			return printImages(cmd.OutOrStdout(), output, imgs)
		}}
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(imp, list)
	return cmd
}

// connectNode reaches the containerd of the node with data directory
// dataDir, or the one at address.
func connectNode(ctx context.Context, dataDir, address string) (*runtime.Containerd, error) {
	if address == "" {
		address = filepath.Join(dataDir, "containerd", "containerd.sock")
	}
	// runtime.Connect waits for a socket to appear and answer, as a node
	// starting beside its containerd must; an operator's command should
	// say at once that nothing is there.
	if err := probeSocket(address); err != nil {
		return nil, fmt.Errorf("%w: %s", err, nodeHint)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := runtime.Connect(ctx, address)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, nodeHint)
	}
	return c, nil
}

// connectTimeout bounds the wait for a containerd whose socket accepts
// connections but that does not answer (one stopping, or hung).
const connectTimeout = 10 * time.Second

// probeSocket says whether something listens on the unix socket at path.
func probeSocket(path string) error {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no containerd socket at %s", path)
		}
		return fmt.Errorf("containerd socket %s: %w", path, err)
	}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return fmt.Errorf("nothing answers on the containerd socket %s (left by a node that stopped?): %w", path, err)
	}
	return conn.Close()
}

// imageList is `image list -o json`.
type imageList struct {
	Images []corev1.ContainerImage `json:"images"`
}

// printImages writes imgs as a table or as one JSON object.
func printImages(w io.Writer, output string, imgs []corev1.ContainerImage) error {
	if output == "json" {
		if imgs == nil {
			imgs = []corev1.ContainerImage{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(imageList{Images: imgs})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tSIZE")
	for _, img := range imgs {
		fmt.Fprintf(tw, "%s\t%.1fM\n", strings.Join(img.Names, ","), float64(img.SizeBytes)/(1<<20))
	}
	return tw.Flush()
}
