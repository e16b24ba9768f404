// Package storage keeps API objects in etcd: one key per object under
// /registry/<group>/<resource>/<namespace>/<name>, resourceVersion taken from the
// key's etcd ModRevision, compare-and-swap updates through etcd transactions, and a
// watch cache per resource that serves lists and watches without reading etcd on
// every request.
package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/storage/value"
)

// Codec turns objects into the bytes stored in etcd and back.
type Codec interface {
	Encode(obj runtime.Object) ([]byte, error)
	Decode(data []byte, into runtime.Object) (runtime.Object, error)
}

// Store is the etcd-backed storage of one resource.
type Store struct {
	client   *clientv3.Client
	prefix   string
	resource schema.GroupResource
	codec    Codec
	newFunc  func() runtime.Object
	cache    *watchCache
	// jsonEncode and protoEncode encode an object for the cache's encoded
	// copies.
	jsonEncode, protoEncode func(runtime.Object) ([]byte, error)
	// transformer turns encoded objects into what etcd holds (encryption
	// at rest) and back; nil stores them as they are.
	transformer value.Transformer
}

// Config describes one resource's storage.
type Config struct {
	// Prefix is the key prefix of every object of the resource, ending in "/".
	Prefix   string
	Resource schema.GroupResource
	Codec    Codec
	NewFunc  func() runtime.Object
	// AttrFunc gives the label and field sets that selectors match against.
	AttrFunc AttrFunc
	// JSONEncode, when set, lets lists served from the cache reuse each object's
	// JSON encoding.
	JSONEncode func(runtime.Object) ([]byte, error)
	// ProtoEncode, when set, does the same for the object's protobuf message
	// (without the envelope), what a protobuf list holds as each item.
	ProtoEncode func(runtime.Object) ([]byte, error)
	// CacheEvents is how many recent events the watch cache keeps for watches
	// that resume from an older resourceVersion.
	CacheEvents int
	// Transformer, when set, encrypts what is written (and decrypts what
	// is read), as Kubernetes' EncryptionConfiguration providers do, with
	// the object's etcd key as authenticated data.
	Transformer value.Transformer
}

// New creates the store and starts its watch cache; it returns once the cache
// holds the resource's current state.
func New(ctx context.Context, client *clientv3.Client, cfg Config) (*Store, error) {
	s := &Store{client: client, prefix: cfg.Prefix, resource: cfg.Resource, codec: cfg.Codec, newFunc: cfg.NewFunc,
		jsonEncode: cfg.JSONEncode, protoEncode: cfg.ProtoEncode, transformer: cfg.Transformer}
	if cfg.CacheEvents <= 0 {
		cfg.CacheEvents = 10000
	}
	c, err := newWatchCache(ctx, s, cfg.AttrFunc, cfg.CacheEvents)
	if err != nil {
		return nil, fmt.Errorf("starting watch cache for %s: %w", cfg.Resource, err)
	}
	s.cache = c
	return s, nil
}

// Key returns the etcd key of an object.
func (s *Store) Key(namespace, name string) string {
	if namespace == "" {
		return s.prefix + name
	}
	return s.prefix + namespace + "/" + name
}

// NamespacePrefix returns the key prefix of a namespace's objects (or of every
// object when namespace is empty).
func (s *Store) NamespacePrefix(namespace string) string {
	if namespace == "" {
		return s.prefix
	}
	return s.prefix + namespace + "/"
}

func (s *Store) decode(key, data []byte, rev int64) (runtime.Object, error) {
	obj, _, err := s.decodeStale(key, data, rev)
	return obj, err
}

// decodeStale decodes a stored value and says whether it is stale: not
// written the way the encryption configuration writes now (plaintext, or
// an older key), so that an update rewrites it even when the object does
// not change.
func (s *Store) decodeStale(key, data []byte, rev int64) (runtime.Object, bool, error) {
	var stale bool
	if s.transformer != nil {
		plain, st, err := s.transformer.TransformFromStorage(context.Background(), data, value.DefaultContext(key))
		if err != nil {
			return nil, false, fmt.Errorf("decrypting %s %s (is the encryption configuration the one it was written with?): %w", s.resource, key, err)
		}
		data, stale = plain, st
	}
	obj, err := s.codec.Decode(data, s.newFunc())
	if err != nil {
		return nil, false, fmt.Errorf("decoding %s: %w", s.resource, err)
	}
	if err := setRV(obj, rev); err != nil {
		return nil, false, err
	}
	return obj, stale, nil
}

func setRV(obj runtime.Object, rev int64) error {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	acc.SetResourceVersion(strconv.FormatInt(rev, 10))
	return nil
}

func (s *Store) encode(ctx context.Context, key string, obj runtime.Object) ([]byte, error) {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	// The resourceVersion lives in etcd's ModRevision, never in the value.
	rv := acc.GetResourceVersion()
	acc.SetResourceVersion("")
	data, err := s.codec.Encode(obj)
	acc.SetResourceVersion(rv)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", s.resource, err)
	}
	if s.transformer != nil {
		if data, err = s.transformer.TransformToStorage(ctx, data, value.DefaultContext(key)); err != nil {
			return nil, fmt.Errorf("encrypting %s %s: %w", s.resource, key, err)
		}
	}
	return data, nil
}

// Create stores obj under key unless the key exists; it returns the stored object
// with its resourceVersion: obj itself, which the store takes over (the
// watch cache keeps its own copy, decoded from etcd's event).
func (s *Store) Create(ctx context.Context, key string, obj runtime.Object) (runtime.Object, error) {
	data, err := s.encode(ctx, key, obj)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return nil, etcdErr(err)
	}
	if !resp.Succeeded {
		acc, _ := meta.Accessor(obj)
		return nil, apierrors.NewAlreadyExists(s.resource, acc.GetName())
	}
	if err := setRV(obj, resp.Header.Revision); err != nil {
		return nil, err
	}
	return obj, nil
}

// Get reads the object under key from etcd (a consistent read).
func (s *Store) Get(ctx context.Context, key, name string) (runtime.Object, error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, etcdErr(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, apierrors.NewNotFound(s.resource, name)
	}
	return s.decode(resp.Kvs[0].Key, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// UpdateFunc computes the new object from the current one. It must not modify
// current. Returning a nil object with a nil error means "delete the key".
type UpdateFunc func(current runtime.Object) (runtime.Object, error)

// ErrNoChange is returned by an UpdateFunc when the update would change nothing;
// GuaranteedUpdate then returns the current object without writing.
var ErrNoChange = errors.New("no change")

// GuaranteedUpdate reads the object, applies update and writes the result with a
// compare-and-swap on the ModRevision, retrying when another writer got there
// first. The update func decides about resourceVersion preconditions.
//
// The first attempt starts from the watch cache's copy, as Kubernetes' does:
// a write to an object the cache has caught up with (most writes) costs one
// etcd round trip, the compare-and-swap, instead of a read and then a write.
// A stale copy fails the compare, whose else branch brings the current value
// for the next attempt; and an update func that refuses a cached state (a
// resourceVersion precondition, nothing to change, any error) runs again on
// a read from etcd before its answer counts.
func (s *Store) GuaranteedUpdate(ctx context.Context, key, name string, update UpdateFunc) (runtime.Object, bool, error) {
	current, rev, fromCache := s.cachedForUpdate(key)
	var stale bool
	for attempt := 0; ; attempt++ {
		// An update func can be costly (a patch, admission): a client that went
		// or a request past its deadline stops the retries.
		if err := ctx.Err(); err != nil {
			return nil, false, apierrors.NewTimeoutError(fmt.Sprintf("update of %s %q abandoned: %v", s.resource, name, err), 0)
		}
		if current == nil {
			resp, err := s.client.Get(ctx, key)
			if err != nil {
				return nil, false, etcdErr(err)
			}
			if len(resp.Kvs) == 0 {
				return nil, false, apierrors.NewNotFound(s.resource, name)
			}
			kv := resp.Kvs[0]
			if current, stale, err = s.decodeStale(kv.Key, kv.Value, kv.ModRevision); err != nil {
				return nil, false, err
			}
			rev, fromCache = kv.ModRevision, false
		}
		next, err := update(current)
		if err != nil && fromCache {
			current = nil
			continue
		}
		if errors.Is(err, ErrNoChange) {
			if !stale {
				return current, false, nil
			}
			// Unchanged but stored under an older key (or in plaintext):
			// written again, as Kubernetes does, which is how Secrets are
			// re-encrypted after a key rotation.
			next, err = current, nil
		}
		if err != nil {
			return nil, false, err
		}
		var op clientv3.Op
		deleted := next == nil
		if deleted {
			op = clientv3.OpDelete(key)
		} else {
			data, err := s.encode(ctx, key, next)
			if err != nil {
				return nil, false, err
			}
			op = clientv3.OpPut(key, string(data))
		}
		txn, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(op).Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return nil, false, etcdErr(err)
		}
		if !txn.Succeeded {
			if attempt > 100 {
				return nil, false, apierrors.NewConflict(s.resource, name, errors.New("too many concurrent writers"))
			}
			kvs := txn.Responses[0].GetResponseRange().Kvs
			if len(kvs) == 0 {
				return nil, false, apierrors.NewNotFound(s.resource, name)
			}
			if current, stale, err = s.decodeStale(kvs[0].Key, kvs[0].Value, kvs[0].ModRevision); err != nil {
				return nil, false, err
			}
			rev, fromCache = kvs[0].ModRevision, false
			continue
		}
		// current and next belong to this call (decoded, or copied from the
		// cache; update builds next anew), so they are returned as they are.
		if deleted {
			return current, true, setRV(current, txn.Header.Revision)
		}
		return next, false, setRV(next, txn.Header.Revision)
	}
}

// cachedForUpdate is a copy of the watch cache's object under key and its
// ModRevision, or nil when the cache does not hold it. A copy, as update
// funcs reach far (field managers, admission hooks) and one that modified
// the object it was given would otherwise change what every reader sees.
func (s *Store) cachedForUpdate(key string) (runtime.Object, int64, bool) {
	obj, ok := s.CachedGet(key)
	if !ok {
		return nil, 0, false
	}
	a, err := meta.Accessor(obj)
	if err != nil {
		return nil, 0, false
	}
	rev, err := strconv.ParseInt(a.GetResourceVersion(), 10, 64)
	if err != nil || rev <= 0 {
		return nil, 0, false
	}
	return obj.DeepCopyObject(), rev, true
}

// Delete removes the object under key when its ModRevision still equals rev (or
// unconditionally when rev is 0). It returns the deleted object.
func (s *Store) Delete(ctx context.Context, key, name string, rev int64) (runtime.Object, error) {
	cmp := clientv3.Compare(clientv3.ModRevision(key), ">", 0)
	if rev > 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	resp, err := s.client.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, etcdErr(err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return nil, apierrors.NewNotFound(s.resource, name)
		}
		return nil, apierrors.NewConflict(s.resource, name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
	}
	prev := resp.Responses[0].GetResponseDeleteRange().PrevKvs
	if len(prev) == 0 {
		return nil, apierrors.NewNotFound(s.resource, name)
	}
	return s.decode(prev[0].Key, prev[0].Value, resp.Header.Revision)
}

// CurrentRevision returns etcd's current revision.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	resp, err := s.client.Get(ctx, "/registry/\x00revision-probe", clientv3.WithCountOnly())
	if err != nil {
		return 0, etcdErr(err)
	}
	return resp.Header.Revision, nil
}

func etcdErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return apierrors.NewTimeoutError(fmt.Sprintf("storage request did not finish: %v", err), 1)
	}
	return apierrors.NewInternalError(fmt.Errorf("etcd: %w", err))
}
