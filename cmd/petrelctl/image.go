package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/petrel-project/petrel/dataplane/runtime"
)

func imageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Images in the node's containerd"}
	var dataDir, address string
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/petrel", "the node's data directory (its containerd socket is under containerd/)")
	cmd.PersistentFlags().StringVar(&address, "containerd-address", "", "containerd socket (default <data-dir>/containerd/containerd.sock)")
	connect := func(ctx context.Context) (*runtime.Containerd, error) {
		if address == "" {
			address = filepath.Join(dataDir, "containerd", "containerd.sock")
		}
		c, err := runtime.Connect(ctx, address)
		if err != nil {
			return nil, fmt.Errorf("%w (is the node running? pass --data-dir or --containerd-address)", err)
		}
		return c, nil
	}
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
	list := &cobra.Command{Use: "list", Short: "List the node's images", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Stop()
			imgs, err := runtime.NodeImages(cmd.Context(), c.Client)
			if err != nil {
				return err
			}
			fmt.Printf("%-50s %10s\n", "IMAGE", "SIZE")
			for _, img := range imgs {
				fmt.Printf("%-50s %9.1fM\n", strings.Join(img.Names, ","), float64(img.SizeBytes)/(1<<20))
			}
			return nil
		}}
	cmd.AddCommand(imp, list)
	return cmd
}
