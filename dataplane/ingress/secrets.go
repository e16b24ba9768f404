package ingress

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// secretWatcher watches each TLS Secret the Ingresses name, one by name
// (a field selector on metadata.name), as the kubelet watches its pods'
// Secrets: the Node authorizer lets a node read only the Secrets it has a
// reason to, never list them all.
type secretWatcher struct {
	ctx     context.Context
	client  kubernetes.Interface
	changed func()

	mu      sync.Mutex
	watches map[secretRef]*secretWatch
}

type secretWatch struct {
	store cache.Store
	stop  context.CancelFunc
}

func newSecretWatcher(ctx context.Context, cs kubernetes.Interface, changed func()) *secretWatcher {
	return &secretWatcher{ctx: ctx, client: cs, changed: changed, watches: map[secretRef]*secretWatch{}}
}

// want starts watches of the Secrets in refs and stops the others.
func (w *secretWatcher) want(refs []secretRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := map[secretRef]bool{}
	for _, ref := range refs {
		keep[ref] = true
		if w.watches[ref] != nil {
			continue
		}
		lw := cache.NewFilteredListWatchFromClient(w.client.CoreV1().RESTClient(), "secrets", ref.namespace,
			func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ref.name).String()
			})
		handler := cache.ResourceEventHandlerFuncs{AddFunc: func(interface{}) { w.changed() },
			UpdateFunc: func(interface{}, interface{}) { w.changed() }, DeleteFunc: func(interface{}) { w.changed() }}
		store, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{ListerWatcher: lw, ObjectType: &corev1.Secret{}, Handler: handler})
		ctx, stop := context.WithCancel(w.ctx)
		go ctrl.RunWithContext(ctx)
		w.watches[ref] = &secretWatch{store: store, stop: stop}
	}
	for ref, sw := range w.watches {
		if !keep[ref] {
			sw.stop()
			delete(w.watches, ref)
		}
	}
}

// get returns a watched Secret, nil when it is not (yet) there.
func (w *secretWatcher) get(ref secretRef) *corev1.Secret {
	w.mu.Lock()
	sw := w.watches[ref]
	w.mu.Unlock()
	if sw == nil {
		return nil
	}
	obj, ok, err := sw.store.GetByKey(ref.namespace + "/" + ref.name)
	if err != nil || !ok {
		return nil
	}
	return obj.(*corev1.Secret)
}

func (w *secretWatcher) stopAll() { w.want(nil) }
