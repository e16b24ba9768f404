// Package encryption keeps API objects encrypted at rest: the server's
// EncryptionConfiguration (Kubernetes' own file format, read with
// k8s.io/apiserver's loader, so its providers — aesgcm, aescbc, secretbox,
// identity — and the values they write, `k8s:enc:<provider>:v1:<key>:...`,
// are Kubernetes') and the one a server makes at first start when none is
// given: Secrets under a fresh AES-GCM key, identity after it so that
// values written before encryption was on are still read.
package encryption

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"
)

// DefaultFile is where a server keeps the configuration it made, relative
// to its data dir; it is part of the cluster identity a joining server
// receives.
const DefaultFile = "pki/encryption-config.yaml"

// defaultConfig is the configuration made at first start: %s is a base64
// 32-byte key.
const defaultConfig = `# Made by petrel server at first start: Secrets are encrypted in etcd with
# the first provider; the others read what was written before. Kubernetes'
# EncryptionConfiguration format (kube-apiserver --encryption-provider-config).
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aesgcm:
      keys:
      - name: key1
        secret: %s
  - identity: {}
`

// EnsureDefault writes the default configuration at path unless a file is
// there, with a new random key, readable by root only.
func EnsureDefault(path string) error {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("encryption key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, defaultConfig, base64.StdEncoding.EncodeToString(key)), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// Transformers are the encrypting transformers by resource; a resource the
// configuration does not name is stored as it is.
type Transformers map[schema.GroupResource]value.Transformer

// For is the transformer of a resource (by its name, its group's `*` or
// `*.*`, as Kubernetes resolves them), or nil to store it as it is.
func (t Transformers) For(gr schema.GroupResource) value.Transformer {
	for _, k := range []schema.GroupResource{gr, {Group: gr.Group, Resource: "*"}, {Group: "*", Resource: "*"}} {
		if t[k] != nil {
			return encryptionconfig.StaticTransformers(t).TransformerForResource(gr)
		}
	}
	return nil
}

// Load reads an EncryptionConfiguration file. KMS providers are refused:
// Petrel runs no KMS plugin connection.
func Load(ctx context.Context, path string) (Transformers, error) {
	cfg, err := encryptionconfig.LoadEncryptionConfig(ctx, path, false, "petrel")
	if err != nil {
		return nil, fmt.Errorf("encryption provider config %s: %w", path, err)
	}
	if cfg.KMSCloseGracePeriod > 0 {
		return nil, fmt.Errorf("encryption provider config %s: KMS providers are not supported by Petrel; use aesgcm, aescbc, secretbox or identity", path)
	}
	return Transformers(cfg.Transformers), nil
}
