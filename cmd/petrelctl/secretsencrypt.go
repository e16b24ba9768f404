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
With several servers, the edited file reaches the others through etcd (sealed with
the cluster CA's key); each takes it at its restart.`}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/petrel", "the server's data directory")
	cmd.PersistentFlags().StringVar(&configFile, "encryption-provider-config", "", "the server's --encryption-provider-config (default <data-dir>/"+encryption.DefaultFile+")")
	cmd.PersistentFlags().StringSliceVar(&endpoints, "endpoints", []string{etcd.DefaultClientURL}, "client URLs of the embedded etcd, for status")
	path := func() string {
		if configFile != "" {
			return configFile
		}
		return filepath.Join(dataDir, encryption.DefaultFile)
	}
	connect := func(ctx context.Context) (*etcd.Backend, error) {
		dir := etcd.PKIDir(dataDir)
		return etcd.Start(ctx, etcd.Config{Endpoints: endpoints, CAFile: filepath.Join(dir, "ca.crt"),
			CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key")})
	}
	// storedSecrets reads the Secrets as etcd holds them.
	storedSecrets := func(ctx context.Context) (*clientv3.GetResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, err := connect(ctx)
		if err != nil {
			return nil, err
		}
		defer b.Close()
		resp, err := b.Client.Get(ctx, "/registry/secrets/", clientv3.WithPrefix())
		if err != nil {
			return nil, fmt.Errorf("read the Secrets from etcd: %w", err)
		}
		return resp, nil
	}
	// publish hands the edited default file to the other servers through
	// etcd (each takes it at its next start); an operator's own file is
	// theirs to copy.
	publish := func(ctx context.Context) string {
		if configFile != "" {
			return "copy the file to every server"
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, err := connect(ctx)
		if err == nil {
			defer b.Close()
			err = encryption.Publish(ctx, b.Client, path(), filepath.Join(dataDir, "pki", "ca.key"))
		}
		if err != nil {
			return fmt.Sprintf("the other servers did not get it (%v): copy the file to every server", err)
		}
		return "every server takes it from etcd at its restart"
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
			resp, err := storedSecrets(cmd.Context())
			if err != nil {
				return err
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := encryption.Prepare(path())
			if err != nil {
				return err
			}
			fmt.Printf("added key %s to %s (not used for writes yet); %s.\nNext: restart every server, then run petrelctl secrets-encrypt rotate.\n", name, path(), publish(cmd.Context()))
			return nil
		}}
	rotate := &cobra.Command{Use: "rotate", Short: "Write with the prepared key from now on: restart every server, then reencrypt", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := encryption.Rotate(path())
			if err != nil {
				return err
			}
			fmt.Printf("Secrets are written with %s once the servers restart (the old key still reads); %s.\nNext: restart every server, then run petrelctl secrets-encrypt reencrypt.\n", name, publish(cmd.Context()))
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
			// The old keys go once nothing in etcd is stored with them.
			cfg, err := encryption.ReadConfig(path())
			if err != nil {
				return err
			}
			want := map[string]bool{}
			for res, key := range encryption.Primary(cfg) {
				if strings.Contains(res, "secrets") || res == "*.*" || res == "*." {
					want["k8s:enc:"+strings.Replace(key, ":", ":v1:", 1)] = true
				}
			}
			resp, err := storedSecrets(ctx)
			if err != nil {
				return err
			}
			for _, kv := range resp.Kvs {
				if !want[storedWith(kv.Value)] {
					fmt.Printf("kept the old keys: %s is stored %s (run reencrypt again once every server was restarted after rotate)\n", kv.Key, storedWith(kv.Value))
					return nil
				}
			}
			dropped, err := encryption.Retire(path())
			if err != nil {
				return err
			}
			if len(dropped) > 0 {
				fmt.Printf("removed the old keys %v from %s; %s\n", dropped, path(), publish(ctx))
			}
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
