package encryption

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdKey is where the cluster's copy of the default encryption
// configuration lives, sealed, so that a key prepared or rotated on one
// server reaches the others at their next start (k3s keeps its copy in
// etcd the same way). Kubernetes' own storage never reads this prefix.
const EtcdKey = "/petrel/encryption-config"

// sealKey derives the key that seals the copy from the cluster CA's private
// key, which every server holds (it comes with the join) and nothing else
// in etcd does: reading etcd does not give the Secrets' keys.
func sealKey(caKeyFile string) ([]byte, error) {
	pem, err := os.ReadFile(caKeyFile)
	if err != nil {
		return nil, fmt.Errorf("the cluster CA key seals the encryption configuration in etcd: %w", err)
	}
	return hkdf.Key(sha256.New, pem, nil, "petrel encryption configuration", 32)
}

func gcmOf(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(key, plain []byte) ([]byte, error) {
	gcm, err := gcmOf(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plain, []byte(EtcdKey)), nil
}

func open(key, sealed []byte) ([]byte, error) {
	gcm, err := gcmOf(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("sealed encryption configuration is too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(EtcdKey))
}

// Publish puts the file at path into etcd as the cluster's copy, sealed
// with a key from the CA key at caKeyFile.
func Publish(ctx context.Context, cli *clientv3.Client, path, caKeyFile string) error {
	plain, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	key, err := sealKey(caKeyFile)
	if err != nil {
		return err
	}
	sealed, err := seal(key, plain)
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, EtcdKey, string(sealed)); err != nil {
		return fmt.Errorf("publishing the encryption configuration: %w", err)
	}
	return nil
}

// Sync makes the file at path the cluster's copy: when etcd holds one that
// differs, the file is replaced by it (and true returned); when etcd holds
// none, the file is published (the first server of a cluster, or one from
// before this copy existed).
func Sync(ctx context.Context, cli *clientv3.Client, path, caKeyFile string) (bool, error) {
	resp, err := cli.Get(ctx, EtcdKey)
	if err != nil {
		return false, fmt.Errorf("reading the cluster's encryption configuration: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return false, Publish(ctx, cli, path, caKeyFile)
	}
	key, err := sealKey(caKeyFile)
	if err != nil {
		return false, err
	}
	plain, err := open(key, resp.Kvs[0].Value)
	if err != nil {
		return false, fmt.Errorf("opening the cluster's encryption configuration (another cluster's CA?): %w", err)
	}
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, plain) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, plain, 0o600); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}
