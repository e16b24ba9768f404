package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/petrel-project/petrel/controlplane/etcd"
)

// etcdCommand is `petrelctl etcd member list|remove` and `petrelctl etcd
// snapshot save|restore`: the servers' etcd cluster, reached with the
// server's own etcd client certificate (<data-dir>/pki/etcd/client.crt).
func etcdCommand() *cobra.Command {
	var dataDir string
	var endpoints []string
	cmd := &cobra.Command{Use: "etcd", Short: "The servers' etcd cluster: its members and snapshots"}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/petrel", "a server's data directory, whose etcd client certificate is used")
	cmd.PersistentFlags().StringSliceVar(&endpoints, "endpoints", []string{etcd.DefaultClientURL}, "client URLs of the embedded etcd (the server's --etcd-client-url)")
	connect := func(ctx context.Context) (*etcd.Backend, error) {
		dir := etcd.PKIDir(dataDir)
		return etcd.Start(ctx, etcd.Config{Endpoints: endpoints, CAFile: filepath.Join(dir, "ca.crt"),
			CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key")})
	}
	member := &cobra.Command{Use: "member", Short: "List or remove etcd members"}
	list := &cobra.Command{Use: "list", Short: "List the members: ID, name, started, peer and client URLs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			b, err := connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			members, err := b.Members(ctx)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tSTARTED\tPEER URLS\tCLIENT URLS\tLEARNER")
			for _, m := range members {
				fmt.Fprintf(w, "%x\t%s\t%t\t%s\t%s\t%t\n", m.ID, orNone(m.Name), m.Started(), strings.Join(m.PeerURLs, ","), orNone(strings.Join(m.ClientURLs, ",")), m.Learner)
			}
			return w.Flush()
		}}
	remove := &cobra.Command{Use: "remove ID|NAME", Short: "Remove a member (a server that is gone for good; stop it first)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			b, err := connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			members, err := b.Members(ctx)
			if err != nil {
				return err
			}
			for _, m := range members {
				if m.Name == args[0] || strconv.FormatUint(m.ID, 16) == strings.ToLower(args[0]) {
					if err := b.RemoveMember(ctx, m.ID); err != nil {
						return err
					}
					fmt.Printf("removed member %x (%s)\n", m.ID, orNone(m.Name))
					return nil
				}
			}
			return fmt.Errorf("no etcd member has ID or name %q (see petrelctl etcd member list)", args[0])
		}}
	member.AddCommand(list, remove)
	cmd.AddCommand(member, snapshotCommand(connect, &dataDir))
	return cmd
}

// snapshotCommand is `petrelctl etcd snapshot save|restore`.
func snapshotCommand(connect func(context.Context) (*etcd.Backend, error), dataDir *string) *cobra.Command {
	snap := &cobra.Command{Use: "snapshot", Short: "Save a snapshot of etcd, or restore one into a data dir"}
	save := &cobra.Command{Use: "save FILE", Short: "Save a snapshot of the etcd member at --endpoints (the whole store) to FILE", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			b, err := connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			info, err := b.Save(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Printf("saved %s: %d bytes, revision %d, %d keys (etcd %s)\n", info.Path, info.Size, info.Revision, info.Keys, orNone(info.Version))
			return nil
		}}
	var name, peerURL string
	restore := &cobra.Command{Use: "restore FILE", Short: "Restore a snapshot into --data-dir as a new one-member cluster (the server is stopped; start it without --join after)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				// The member's own name, when the data dir recorded one (a
				// server that joined).
				if b, err := os.ReadFile(filepath.Join(*dataDir, "etcd-member-name")); err == nil {
					name = strings.TrimSpace(string(b))
				}
			}
			moved, err := etcd.Restore(etcd.RestoreConfig{Snapshot: args[0], DataDir: *dataDir, Name: name, PeerURL: peerURL})
			if err != nil {
				return err
			}
			fmt.Printf("restored %s into %s as a new one-member cluster", args[0], filepath.Join(*dataDir, "etcd"))
			if moved != "" {
				fmt.Printf(" (the old member is in %s)", moved)
			}
			fmt.Printf("\nstart the server on %s without --join; other servers join it again with fresh data dirs\n", *dataDir)
			return nil
		}}
	restore.Flags().StringVar(&name, "name", "", "the member's name (default: the data dir's, else petrel)")
	restore.Flags().StringVar(&peerURL, "peer-url", etcd.DefaultPeerURL, "the member's peer URL (the server's --etcd-peer-url)")
	snap.AddCommand(save, restore)
	return snap
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
