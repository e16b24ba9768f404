package storage

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ListOptions selects what a list returns.
type ListOptions struct {
	Prefix               string
	Predicate            Predicate
	ResourceVersion      string
	ResourceVersionMatch metav1.ResourceVersionMatch
	Limit                int64
	Continue             string
}

// ListResult is one page of a list.
type ListResult struct {
	Items []runtime.Object
	// ItemJSON and ItemProto, when set, return item i's JSON or protobuf
	// message from the watch cache, encoded once per object version.
	ItemJSON, ItemProto func(i int) ([]byte, error)
	ResourceVersion     int64
	Continue            string
	RemainingItemCount  *int64
}

type continueToken struct {
	APIVersion      string `json:"v"`
	ResourceVersion int64  `json:"rv"`
	StartKey        string `json:"start"`
}

// List returns objects under opts.Prefix. Whole lists come from the watch cache
// (after it has caught up with etcd for a consistent read), and so do lists at
// resourceVersion=0 or with resourceVersionMatch=NotOlderThan, whatever their
// limit; paginated lists (a limit with no resourceVersion, or with one and no
// match rule) and exact-revision lists read etcd at a fixed revision so that
// every page is from the same snapshot and carries a continue token when more
// remain.
func (s *Store) List(ctx context.Context, opts ListOptions) (*ListResult, error) {
	if opts.Continue != "" {
		return s.listContinue(ctx, opts)
	}
	var rv int64
	if opts.ResourceVersion != "" {
		v, err := strconv.ParseInt(opts.ResourceVersion, 10, 64)
		if err != nil || v < 0 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid resourceVersion %q", opts.ResourceVersion))
		}
		rv = v
	}
	if opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact {
		if rv == 0 {
			return nil, apierrors.NewBadRequest("resourceVersionMatch=Exact requires a non-zero resourceVersion")
		}
		return s.listEtcdFrom(ctx, opts, opts.Prefix, rv)
	}
	if opts.Limit > 0 && opts.ResourceVersion == "" {
		return s.listEtcdFrom(ctx, opts, opts.Prefix, 0)
	}
	if opts.Limit > 0 && rv > 0 && opts.ResourceVersionMatch == "" {
		// A limited list at a given resourceVersion, without a match rule, pages
		// through etcd at exactly that revision (Kubernetes' legacy meaning), so
		// every page continues where the last one ended.
		return s.listEtcdFrom(ctx, opts, opts.Prefix, rv)
	}
	switch {
	case opts.ResourceVersion == "":
		cur, err := s.CurrentRevision(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.cache.waitFresh(ctx, cur); err != nil {
			return s.listEtcdFrom(ctx, opts, opts.Prefix, 0)
		}
	case rv > 0:
		if err := s.cache.waitFresh(ctx, rv); err != nil {
			return nil, apierrors.NewTimeoutError(err.Error(), 1)
		}
	}
	entries, cacheRev := s.cache.snapshot(opts.Prefix, opts.Predicate)
	// What is left to serve from the cache (resourceVersion=0, or NotOlderThan)
	// is served whole: the limit is only a hint there, as in Kubernetes' watch
	// cache. Cutting it short without a continue token would hand a reflector
	// the first page as if it were everything.
	res := &ListResult{ResourceVersion: cacheRev}
	res.Items = make([]runtime.Object, len(entries))
	for i, e := range entries {
		res.Items[i] = e.obj
	}
	if s.jsonEncode != nil {
		res.ItemJSON = func(i int) ([]byte, error) { return entries[i].JSON(s.jsonEncode) }
	}
	if s.protoEncode != nil {
		res.ItemProto = func(i int) ([]byte, error) { return entries[i].Proto(s.protoEncode) }
	}
	return res, nil
}

func (s *Store) listContinue(ctx context.Context, opts ListOptions) (*ListResult, error) {
	raw, err := base64.RawURLEncoding.DecodeString(opts.Continue)
	if err != nil {
		return nil, apierrors.NewBadRequest("continue key is not valid: " + err.Error())
	}
	var tok continueToken
	if err := json.Unmarshal(raw, &tok); err != nil || tok.APIVersion != "meta.k8s.io/v1" || tok.ResourceVersion == 0 || tok.ResourceVersion < -1 {
		return nil, apierrors.NewBadRequest("continue key is not valid")
	}
	if !strings.HasPrefix(tok.StartKey, opts.Prefix) {
		return nil, apierrors.NewBadRequest("continue key does not belong to this list")
	}
	rev := tok.ResourceVersion
	if rev == -1 {
		// A token handed out with a 410 (below): go on from its key at the
		// latest revision, knowingly inconsistent.
		rev = 0
	}
	res, err := s.listEtcdFrom(ctx, opts, tok.StartKey, rev)
	if apierrors.IsResourceExpired(err) {
		// As Kubernetes: the 410 carries a token that goes on from the same
		// key at the latest revision, for a client that accepts an
		// inconsistent list rather than starting over.
		next, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", ResourceVersion: -1, StartKey: tok.StartKey})
		return nil, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusGone, Reason: metav1.StatusReasonExpired,
			Message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, " +
				"or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - " +
				"objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
			ListMeta: metav1.ListMeta{Continue: base64.RawURLEncoding.EncodeToString(next)},
		}}
	}
	return res, err
}

// listEtcdFrom reads pages from etcd at one revision until the page is full of
// objects that match the predicate.
func (s *Store) listEtcdFrom(ctx context.Context, opts ListOptions, start string, rev int64) (*ListResult, error) {
	end := clientv3.GetPrefixRangeEnd(opts.Prefix)
	res := &ListResult{}
	limit := opts.Limit
	batch := limit
	if batch <= 0 || batch < 100 && !opts.Predicate.Empty() {
		batch = 500
	}
	key := start
	for {
		getOpts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(batch)}
		if rev > 0 {
			getOpts = append(getOpts, clientv3.WithRev(rev))
		}
		resp, err := s.client.Get(ctx, key, getOpts...)
		if err != nil {
			if err == rpctypes.ErrCompacted {
				return nil, apierrors.NewResourceExpired(fmt.Sprintf("the resourceVersion %d is too old; list again without a continue token", rev))
			}
			if err == rpctypes.ErrFutureRev {
				return nil, apierrors.NewTimeoutError(fmt.Sprintf("resourceVersion %d is newer than the storage", rev), 1)
			}
			return nil, etcdErr(err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for i, kv := range resp.Kvs {
			obj, err := s.decode(kv.Key, kv.Value, kv.ModRevision)
			if err != nil {
				return nil, err
			}
			e := s.cache.makeEntry(string(kv.Key), obj)
			if !opts.Predicate.matches(e) {
				continue
			}
			res.Items = append(res.Items, obj)
			if limit > 0 && int64(len(res.Items)) == limit {
				more := i < len(resp.Kvs)-1 || resp.More
				if more {
					next := string(kv.Key) + "\x00"
					tok, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", ResourceVersion: rev, StartKey: next})
					res.Continue = base64.RawURLEncoding.EncodeToString(tok)
					if opts.Predicate.Empty() {
						remaining := resp.Count - int64(i) - 1
						if remaining > 0 {
							res.RemainingItemCount = &remaining
						}
					}
				}
				res.ResourceVersion = rev
				return res, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	res.ResourceVersion = rev
	return res, nil
}
