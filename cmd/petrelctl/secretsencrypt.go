package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/controlplane/encryption"
	"github.com/petrel-project/petrel/controlplane/etcd"
)

// secretsEncryptCommand is `petrelctl secrets-encrypt status|prepare|rotate|
// reencrypt`, k3s's names for the stages of a key rotation, on a server's
// <data-dir>/pki/encryption-config.yaml.
func secretsEncryptCommand() *cobra.Command {
	var dataDir, configFile string
	var endpoints []string
	cmd := &cobra.Command{Use: "secrets-encrypt", Short: "Encryption at rest of Secrets: status and key rotation (prepare, rotate, reencrypt)",
		Long: `Rotating the key of Secrets encrypted at rest, in k3s's stages:
  prepare    add a new key, second (every server reads with it once restarted)
  rotate     make it the key Secrets are written with (restart every server)
  reencrypt  rewrite every Secret with it (through the API)
With several servers, give every server the edited file before restarting it.`}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/petrel", "the server's data directory")
	cmd.PersistentFlags().StringVar(&configFile, "encryption-provider-config", "", "the server's --encryption-provider-config (default <data-dir>/"+encryption.DefaultFile+")")
	cmd.PersistentFlags().StringSliceVar(&endpoints, "endpoints", []string{etcd.DefaultClientURL}, "client URLs of the embedded etcd, for status")
	path := func() string {
		if configFile != "" {
			return configFile
		}
		return filepath.Join(dataDir, encryption.DefaultFile)
	}
	status := &cobra.Command{Use: "status", Short: "The key each resource is written with, and how the stored Secrets are encrypted now", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := encryption.ReadConfig(path())
			if err != nil {
				return fmt.Errorf("%w (is encryption at rest off, --secrets-encryption=false?)", err)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(w, "RESOURCES\tWRITTEN WITH")
			for res, key := range encryption.Primary(cfg) {
				fmt.Fprintf(w, "%s\t%s\n", res, key)
			}
			_ = w.Flush()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			dir := etcd.PKIDir(dataDir)
			b, err := etcd.Start(ctx, etcd.Config{Endpoints: endpoints, CAFile: filepath.Join(dir, "ca.crt"),
				CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key")})
			if err != nil {
				return err
			}
			defer b.Close()
			resp, err := b.Client.Get(ctx, "/registry/secrets/", clientv3.WithPrefix())
			if err != nil {
				return fmt.Errorf("read the Secrets from etcd: %w", err)
			}
			counts := map[string]int{}
			for _, kv := range resp.Kvs {
				counts[storedWith(kv.Value)]++
			}
			fmt.Printf("\n%d Secrets in etcd:\n", len(resp.Kvs))
			keys := make([]string, 0, len(counts))
			for k := range counts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Printf("  %d %s\n", counts[k], k)
			}
			return nil
		}}
	prepare := &cobra.Command{Use: "prepare", Short: "Add a new key, second: restart every server so that each can read it", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			name, err := encryption.Prepare(path())
			if err != nil {
				return err
			}
			fmt.Printf("added key %s to %s (not used for writes yet).\nNext: copy the file to every server, restart them, then run petrelctl secrets-encrypt rotate.\n", name, path())
			return nil
		}}
	rotate := &cobra.Command{Use: "rotate", Short: "Write with the prepared key from now on: restart every server, then reencrypt", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			name, err := encryption.Rotate(path())
			if err != nil {
				return err
			}
			fmt.Printf("Secrets are written with %s once the servers restart (the old key still reads).\nNext: copy the file to every server, restart them, then run petrelctl secrets-encrypt reencrypt.\n", name)
			return nil
		}}
	reencrypt := &cobra.Command{Use: "reencrypt", Short: "Rewrite every Secret through the API, so each is stored with the current key", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dataDir, "admin.kubeconfig"))
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			list, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			n := 0
			for i := range list.Items {
				s := &list.Items[i]
				// An unchanged update: the server writes it again only when
				// it is stored with another key than the current one.
				if _, err := cs.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
					return fmt.Errorf("rewrite Secret %s/%s (%d of %d done; run reencrypt again): %w", s.Namespace, s.Name, n, len(list.Items), err)
				}
				n++
			}
			fmt.Printf("rewrote %d Secrets; petrelctl secrets-encrypt status shows how they are stored\n", n)
			return nil
		}}
	cmd.AddCommand(status, prepare, rotate, reencrypt)
	return cmd
}

// storedWith names how a stored value is encrypted: its k8s:enc:<provider>:
// v1:<key> prefix, or plaintext.
func storedWith(v []byte) string {
	if !bytes.HasPrefix(v, []byte("k8s:enc:")) {
		return "not encrypted"
	}
	parts := strings.SplitN(string(v), ":", 6)
	if len(parts) < 5 {
		return "k8s:enc:?"
	}
	return strings.Join(parts[:5], ":")
}
