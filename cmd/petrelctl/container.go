package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/spf13/cobra"

	"github.com/petrel-project/petrel/dataplane/kubelet"
	"github.com/petrel-project/petrel/dataplane/runtime"
)

// containerRow is one pod container on the node, as `container list`
// prints it.
type containerRow struct {
	ID         string `json:"id"`
	Namespace  string `json:"namespace"`
	Pod        string `json:"pod"`
	Container  string `json:"container"`
	Restarts   string `json:"restarts"`
	OCIRuntime string `json:"ociRuntime"`
	Running    bool   `json:"running"`
}

func containerCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "container", Short: "Pod containers in the node's containerd"}
	var dataDir, address, output string
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/petrel", "the node's data directory (its containerd socket is under containerd/)")
	cmd.PersistentFlags().StringVar(&address, "containerd-address", "", "containerd socket (default <data-dir>/containerd/containerd.sock)")
	list := &cobra.Command{Use: "list", Short: "List the node's pod containers with the OCI runtime (crun, runc) that runs each (a table, or -o json)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o must be table or json, not %q", output)
			}
			c, err := connectNode(cmd.Context(), dataDir, address)
			if err != nil {
				return err
			}
			defer c.Stop()
			rows, err := podContainers(cmd.Context(), c.Client)
			if err != nil {
				return err
			}
			return printContainers(cmd.OutOrStdout(), output, rows)
		}}
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(list)
	return cmd
}

// podContainers reads the pod containers from containerd.
func podContainers(ctx context.Context, c *containerd.Client) ([]containerRow, error) {
	ctrs, err := c.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	rows := []containerRow{}
	for _, ctr := range ctrs {
		info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			continue // removed while listed
		}
		pc, ok := kubelet.PodContainerOf(info.Labels)
		if !ok {
			continue
		}
		st, _ := runtime.State(ctx, ctr)
		rows = append(rows, containerRow{ID: ctr.ID(), Namespace: pc.Namespace, Pod: pc.Pod, Container: pc.Container,
			Restarts: pc.Restarts, OCIRuntime: pc.OCIRuntime, Running: st.Running})
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Namespace+"/"+a.Pod != b.Namespace+"/"+b.Pod {
			return a.Namespace+"/"+a.Pod < b.Namespace+"/"+b.Pod
		}
		return a.Container+a.Restarts < b.Container+b.Restarts
	})
	return rows, nil
}

func printContainers(w io.Writer, output string, rows []containerRow) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"containers": rows})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tCONTAINER\tRESTARTS\tOCI RUNTIME\tRUNNING\tID")
	for _, r := range rows {
		rt := r.OCIRuntime
		if rt == "" {
			rt = "(shim default)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\n", r.Namespace, r.Pod, r.Container, r.Restarts, rt, r.Running, r.ID)
	}
	return tw.Flush()
}
