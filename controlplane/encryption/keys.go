package encryption

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

// Key rotation follows k3s's stages on the configuration file: Prepare adds
// a new key second (every server can read values written with it once
// restarted), Rotate makes it first (new writes use it; the old key stays
// second to read the rest), and a reencrypt rewrites the stored values.

// ReadConfig parses an EncryptionConfiguration file.
func ReadConfig(path string) (*apiserverv1.EncryptionConfiguration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cfg, nil
}

// writeConfig replaces the file, readable by root only.
func writeConfig(path string, cfg *apiserverv1.EncryptionConfiguration) error {
	cfg.APIVersion, cfg.Kind = apiserverv1.SchemeGroupVersion.String(), "EncryptionConfiguration"
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// keysOf is the key list of a provider that has keys, and its name.
func keysOf(p *apiserverv1.ProviderConfiguration) (*[]apiserverv1.Key, string) {
	switch {
	case p.AESGCM != nil:
		return &p.AESGCM.Keys, "aesgcm"
	case p.AESCBC != nil:
		return &p.AESCBC.Keys, "aescbc"
	case p.Secretbox != nil:
		return &p.Secretbox.Keys, "secretbox"
	}
	return nil, ""
}

// Prepare adds a new random key, second, to the first provider of every
// resource entry whose first provider has keys, and returns its name.
func Prepare(path string) (string, error) {
	cfg, err := ReadConfig(path)
	if err != nil {
		return "", err
	}
	name := ""
	err = forFirstKeys(cfg, func(r *apiserverv1.ResourceConfiguration, keys *[]apiserverv1.Key) error {
		if len(*keys) > 1 {
			return fmt.Errorf("%s already holds a prepared key (%s) for %v: rotate (and reencrypt) first", path, (*keys)[1].Name, r.Resources)
		}
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		name = nextKeyName(*keys)
		*keys = append(*keys, apiserverv1.Key{Name: name, Secret: base64.StdEncoding.EncodeToString(secret)})
		return nil
	})
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", fmt.Errorf("%s has no provider with keys first (aesgcm, aescbc or secretbox): nothing is encrypted", path)
	}
	return name, writeConfig(path, cfg)
}

// Rotate makes the prepared key (second) the one values are written with,
// keeping the old one second to read what it wrote; it returns the new
// primary key's name.
func Rotate(path string) (string, error) {
	cfg, err := ReadConfig(path)
	if err != nil {
		return "", err
	}
	name := ""
	_ = forFirstKeys(cfg, func(_ *apiserverv1.ResourceConfiguration, keys *[]apiserverv1.Key) error {
		if len(*keys) >= 2 {
			(*keys)[0], (*keys)[1] = (*keys)[1], (*keys)[0]
			name = (*keys)[0].Name
		}
		return nil
	})
	if name == "" {
		return "", fmt.Errorf("%s holds no prepared key: run prepare first (and restart every server)", path)
	}
	return name, writeConfig(path, cfg)
}

// Retire drops every key but the one values are written with, once a
// reencrypt has rewritten every value with it (as k3s's reencrypt ends),
// so that the next rotation can begin; it returns the keys dropped.
func Retire(path string) ([]string, error) {
	cfg, err := ReadConfig(path)
	if err != nil {
		return nil, err
	}
	var dropped []string
	_ = forFirstKeys(cfg, func(_ *apiserverv1.ResourceConfiguration, keys *[]apiserverv1.Key) error {
		for _, k := range (*keys)[min(1, len(*keys)):] {
			dropped = append(dropped, k.Name)
		}
		*keys = (*keys)[:min(1, len(*keys))]
		return nil
	})
	if len(dropped) == 0 {
		return nil, nil
	}
	return dropped, writeConfig(path, cfg)
}

// Primary says, per resource entry, which provider and key values are
// written with: "aesgcm:key2", or "identity" when they are not encrypted.
func Primary(cfg *apiserverv1.EncryptionConfiguration) map[string]string {
	out := map[string]string{}
	for _, r := range cfg.Resources {
		what := "identity"
		if len(r.Providers) > 0 {
			if keys, provider := keysOf(&r.Providers[0]); keys != nil && len(*keys) > 0 {
				what = provider + ":" + (*keys)[0].Name
			} else if r.Providers[0].KMS != nil {
				what = "kms:" + r.Providers[0].KMS.Name
			}
		}
		out[strings.Join(r.Resources, ",")] = what
	}
	return out
}

// forFirstKeys calls fn with the key list of each resource entry whose
// first provider (the one values are written with) has keys.
func forFirstKeys(cfg *apiserverv1.EncryptionConfiguration, fn func(*apiserverv1.ResourceConfiguration, *[]apiserverv1.Key) error) error {
	for i := range cfg.Resources {
		r := &cfg.Resources[i]
		if len(r.Providers) == 0 {
			continue
		}
		if keys, _ := keysOf(&r.Providers[0]); keys != nil {
			if err := fn(r, keys); err != nil {
				return err
			}
		}
	}
	return nil
}

// nextKeyName is key<n+1> for the highest key<n> in use.
func nextKeyName(keys []apiserverv1.Key) string {
	n := 0
	for _, k := range keys {
		if v, err := strconv.Atoi(strings.TrimPrefix(k.Name, "key")); err == nil && v > n {
			n = v
		}
	}
	return "key" + strconv.Itoa(n+1)
}
