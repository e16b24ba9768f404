// Package resourcequota keeps each ResourceQuota's status — its hard
// limits and what the namespace uses of them — computed from the objects
// stored, as Kubernetes' resource quota controller does. Admission charges
// new objects against that status; this controller gives back what
// deletions free and corrects what admission charged for creates that
// then failed.
package resourcequota

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
	"github.com/petrel-project/petrel/controlplane/registry/quota"
)

// counted is one kind of object quotas count, read from an informer or,
// for kinds nothing else here watches (ConfigMaps, Secrets), listed when a
// quota asks for them: watching every ConfigMap and Secret of the cluster
// for the rare quota on them would cost every write of them a copy here.
type counted struct {
	gr      schema.GroupResource
	indexer cache.Indexer
	list    func(ctx context.Context, namespace string) ([]interface{}, error)
	names   []corev1.ResourceName // what it counts under (listed kinds only)
}

// Controller recomputes quota usage.
type Controller struct {
	client  kubernetes.Interface
	quotas  corelisters.ResourceQuotaLister
	counted []counted
	// countedNames are the count/<resource>[.<group>] names of counted.
	countedNames map[string]bool
	// others lists any other served resource's objects (metadata only), for
	// count/<resource>.<group> limits on kinds not counted above.
	others  metadata.Interface
	resolve func(schema.GroupResource) (schema.GroupVersionResource, bool)
	loop    *loop.Loop
}

// New builds the controller on a shared informer factory. It counts the
// kinds Kubernetes' quota covers by name (pods, services, configmaps,
// secrets, persistentvolumeclaims, replicationcontrollers, resourcequotas)
// and the workloads' count/<resource>.<group>.
// Other kinds' count/<resource>.<group> are listed through mc, with resolve
// giving the served version of a group and resource.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, mc metadata.Interface,
	resolve func(schema.GroupResource) (schema.GroupVersionResource, bool)) *Controller {
	qInf := factory.Core().V1().ResourceQuotas()
	c := &Controller{client: cs, quotas: qInf.Lister(), others: mc, resolve: resolve}
	c.loop = loop.New("resource quota controller", c.sync)
	c.loop.Synced(qInf.Informer().HasSynced)
	// A quota is recomputed when made and when its spec.hard changes, not
	// at its status writes: admission charges status.used at each create,
	// and a recount then, from caches that had not seen the object just
	// charged, wrote the charge away (a LoadBalancer Service went past a
	// nodeports quota). Kubernetes' controller ignores status updates too.
	_, _ = qInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.loop.Enqueue, DeleteFunc: c.loop.Enqueue,
		UpdateFunc: func(old, cur interface{}) {
			o, n := old.(*corev1.ResourceQuota), cur.(*corev1.ResourceQuota)
			if !apiequality.Semantic.DeepEqual(o.Spec, n.Spec) {
				c.loop.Enqueue(cur)
			}
		}})
	// Counted objects give back what they used when they go or change
	// (a pod that ended, a Service no longer a NodePort); what is created
	// is charged by admission, so a create queues no recount, as in
	// Kubernetes' replenishment.
	recount := c.loop.NamespaceHandlers(func(namespace string) []interface{} {
		quotas, _ := c.quotas.ResourceQuotas(namespace).List(labels.Everything())
		return loop.Objects(quotas)
	})
	add := func(gr schema.GroupResource, inf cache.SharedIndexInformer) {
		c.counted = append(c.counted, counted{gr: gr, indexer: inf.GetIndexer()})
		c.loop.Synced(inf.HasSynced)
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			// Only an update that changes what the object counts (a pod
			// that ended, a Service that became a NodePort) is recounted:
			// a pod's status writes as it starts changed nothing, and a
			// recount then, from caches that had not seen a pod just
			// created and charged, wrote the charge away and let the next
			// pod past the quota (conformance: an RC past a pods quota).
			UpdateFunc: func(old, cur interface{}) {
				if usageChanged(gr, old, cur) {
					recount.UpdateFunc(old, cur)
				}
			},
			DeleteFunc: recount.DeleteFunc,
		})
	}
	core := factory.Core().V1()
	add(corev1.Resource("pods"), core.Pods().Informer())
	add(corev1.Resource("services"), core.Services().Informer())
	c.counted = append(c.counted,
		counted{gr: corev1.Resource("configmaps"), names: []corev1.ResourceName{corev1.ResourceConfigMaps, "count/configmaps"},
			list: func(ctx context.Context, ns string) ([]interface{}, error) {
				l, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return nil, err
				}
				return pointers(l.Items), nil
			}},
		counted{gr: corev1.Resource("secrets"), names: []corev1.ResourceName{corev1.ResourceSecrets, "count/secrets"},
			list: func(ctx context.Context, ns string) ([]interface{}, error) {
				l, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return nil, err
				}
				return pointers(l.Items), nil
			}})
	add(corev1.Resource("persistentvolumeclaims"), core.PersistentVolumeClaims().Informer())
	add(corev1.Resource("replicationcontrollers"), core.ReplicationControllers().Informer())
	// Quotas count quotas too; a quota's updates (its status, charged at
	// every create) free nothing, so only a deletion recounts the others.
	c.counted = append(c.counted, counted{gr: corev1.Resource("resourcequotas"), indexer: qInf.Informer().GetIndexer()})
	_, _ = qInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: recount.DeleteFunc})
	apps, batch := factory.Apps().V1(), factory.Batch().V1()
	add(schema.GroupResource{Group: "apps", Resource: "deployments"}, apps.Deployments().Informer())
	add(schema.GroupResource{Group: "apps", Resource: "replicasets"}, apps.ReplicaSets().Informer())
	add(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, apps.StatefulSets().Informer())
	add(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, apps.DaemonSets().Informer())
	add(schema.GroupResource{Group: "batch", Resource: "jobs"}, batch.Jobs().Informer())
	add(schema.GroupResource{Group: "batch", Resource: "cronjobs"}, batch.CronJobs().Informer())
	c.countedNames = map[string]bool{}
	for _, k := range c.counted {
		c.countedNames[countName(k.gr)] = true
	}
	return c
}

// countOthers fills in the quota's count/<resource>[.<group>] limits on
// kinds the informers above do not count, by listing them (metadata only);
// it returns how many it listed (they are not watched, so the caller looks
// again soon).
func (c *Controller) countOthers(ctx context.Context, q *corev1.ResourceQuota, used corev1.ResourceList) (int, error) {
	listed := 0
	for name := range q.Spec.Hard {
		rest, ok := strings.CutPrefix(string(name), "count/")
		if !ok || c.countedNames[string(name)] || c.others == nil || c.resolve == nil || len(q.Spec.Scopes) > 0 {
			continue
		}
		res, group, _ := strings.Cut(rest, ".")
		gvr, ok := c.resolve(schema.GroupResource{Group: group, Resource: res})
		if !ok {
			continue
		}
		l, err := c.others.Resource(gvr).Namespace(q.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return listed, err
		}
		listed++
		used[name] = *resource.NewQuantity(int64(len(l.Items)), resource.DecimalSI)
	}
	return listed, nil
}

func countName(gr schema.GroupResource) string {
	if gr.Group == "" {
		return "count/" + gr.Resource
	}
	return "count/" + gr.Resource + "." + gr.Group
}

// pointers returns a pointer to each item, as informers hold them.
func pointers[T any](items []T) []interface{} {
	out := make([]interface{}, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.loop.Run(ctx, 2)
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	q, err := c.quotas.ResourceQuotas(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	used := corev1.ResourceList{}
	for name := range q.Spec.Hard {
		used[name] = resource.MustParse("0")
	}
	resync := 5 * time.Minute
	for _, k := range c.counted {
		var objs []interface{}
		if k.list != nil {
			wanted := false
			for _, n := range k.names {
				_, in := q.Spec.Hard[n]
				wanted = wanted || in
			}
			if !wanted {
				continue
			}
			// Not watched: deletions show at the next look.
			resync = 10 * time.Second
			if objs, err = k.list(ctx, ns); err != nil {
				return 0, err
			}
		} else if objs, err = k.indexer.ByIndex(cache.NamespaceIndex, ns); err != nil {
			return 0, err
		}
		for _, o := range objs {
			if m, err := meta.Accessor(o); err == nil && m.GetDeletionTimestamp() != nil && k.gr.Resource == "pods" {
				continue // a terminating pod no longer counts, as in Kubernetes
			}
			if !quota.QuotaCovers(q, o.(runtime.Object)) {
				continue
			}
			for name, v := range quota.QuotaUsage(k.gr, o.(runtime.Object)) {
				if cur, ok := used[name]; ok {
					cur.Add(v)
					used[name] = cur
				}
			}
		}
	}
	if n, err := c.countOthers(ctx, q, used); err != nil {
		return 0, err
	} else if n > 0 {
		resync = 10 * time.Second
	}
	status := corev1.ResourceQuotaStatus{Hard: q.Spec.Hard.DeepCopy(), Used: used}
	if apiequality.Semantic.DeepEqual(status, q.Status) {
		// Look again now and then: admission may have charged a create
		// that failed afterwards.
		return resync, nil
	}
	next := q.DeepCopy()
	next.Status = status
	_, err = c.client.CoreV1().ResourceQuotas(ns).UpdateStatus(ctx, next, metav1.UpdateOptions{FieldManager: "resourcequota-controller"})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return time.Second, nil
	}
	return resync, err
}

// usageChanged says whether an update changed what the object counts
// against quotas, as Kubernetes' replenishment asks (a pod leaving the
// count, a Service changing type).
func usageChanged(gr schema.GroupResource, old, cur interface{}) bool {
	o, ok1 := old.(runtime.Object)
	n, ok2 := cur.(runtime.Object)
	if !ok1 || !ok2 {
		return true
	}
	return !apiequality.Semantic.DeepEqual(quota.QuotaUsage(gr, o), quota.QuotaUsage(gr, n))
}
