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

// etcdCommand is `petrelctl etcd member list|remove`: the servers' etcd
// cluster, reached with the server's own etcd client certificate
// (<data-dir>/pki/etcd/client.crt).
func etcdCommand() *cobra.Command {
	var dataDir string
	var endpoints []string
	cmd := &cobra.Command{Use: "etcd", Short: "The servers' etcd cluster: its members"}
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
	cmd.AddCommand(member)
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
