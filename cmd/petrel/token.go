package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstrapsecrets "k8s.io/cluster-bootstrap/util/secrets"

	"github.com/petrel-project/petrel/controlplane/server"
)

// tokenCommand is `petrel token create|list`: join tokens for nodes, kept as
// Kubernetes bootstrap tokens (Secrets bootstrap-token-<id> in kube-system).
func tokenCommand() *cobra.Command {
	var dataDir, kubeconfig string
	cmd := &cobra.Command{Use: "token", Short: "Make and list the tokens nodes join with (`petrel node --server URL --token TOKEN`)"}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/petrel", "the server's data directory, whose admin.kubeconfig is used")
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "an admin kubeconfig (default <data-dir>/admin.kubeconfig)")
	client := func() (*kubernetes.Clientset, *rest.Config, error) {
		path := kubeconfig
		if path == "" {
			path = filepath.Join(dataDir, "admin.kubeconfig")
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, nil, fmt.Errorf("read kubeconfig %s (pass --data-dir or --kubeconfig): %w", path, err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		return cs, cfg, err
	}
	var ttl time.Duration
	var description string
	var groups []string
	create := &cobra.Command{Use: "create", Short: "Print a new join token: K10<CA hash>::<id>.<secret>", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, cfg, err := client()
			if err != nil {
				return err
			}
			caPEM := cfg.TLSClientConfig.CAData
			if len(caPEM) == 0 && cfg.TLSClientConfig.CAFile != "" {
				if caPEM, err = os.ReadFile(cfg.TLSClientConfig.CAFile); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			tok, err := server.CreateBootstrapToken(ctx, cs, caPEM, server.TokenOptions{TTL: ttl, Description: description, ExtraGroups: groups})
			if err != nil {
				return fmt.Errorf("creating the token: %w", err)
			}
			fmt.Println(tok.String())
			return nil
		}}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token lets nodes join (0: forever)")
	create.Flags().StringVar(&description, "description", "", "what the token is for (shown by token list)")
	create.Flags().StringSliceVar(&groups, "groups", nil, "extra groups of the token's user, each system:bootstrappers:<name>")
	list := &cobra.Command{Use: "list", Short: "List the bootstrap tokens: ID, expiry, usages, description (never the secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, _, err := client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			secs, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("type", string(bootstrapapi.SecretTypeBootstrapToken)).String()})
			if err != nil {
				return fmt.Errorf("listing tokens: %w", err)
			}
			sort.Slice(secs.Items, func(i, j int) bool { return secs.Items[i].Name < secs.Items[j].Name })
			w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tEXPIRES\tUSAGES\tDESCRIPTION")
			for i := range secs.Items {
				fmt.Fprintln(w, tokenRow(&secs.Items[i]))
			}
			return w.Flush()
		}}
	cmd.AddCommand(create, list)
	return cmd
}

func tokenRow(sec *corev1.Secret) string {
	exp := bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenExpirationKey)
	switch {
	case exp == "":
		exp = "never"
	case bootstrapsecrets.HasExpired(sec, time.Now()):
		exp += " (expired)"
	}
	var usages []string
	for _, u := range bootstrapapi.KnownTokenUsages {
		if bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenUsagePrefix+u) == "true" {
			usages = append(usages, u)
		}
	}
	desc := bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenDescriptionKey)
	if desc == "" {
		desc = "<none>"
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s", bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenIDKey), exp, joinOr(usages, "<none>"), desc)
}

func joinOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	out := items[0]
	for _, s := range items[1:] {
		out += "," + s
	}
	return out
}
