package server

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	corelisters "k8s.io/client-go/listers/core/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/nodeauth"
	"github.com/petrel-project/petrel/controlplane/rbac"
	"github.com/petrel-project/petrel/controlplane/storage"
)

// Authorization modes (--authorization-mode).
const (
	AuthorizationRBAC        = "RBAC"
	AuthorizationAlwaysAllow = "AlwaysAllow"
)

// storeListWatch lets a client-go informer read one of this server's own
// stores in process: every API server authorizes from its own caches,
// without a loopback connection or the JSON round trip.
func storeListWatch(ctx context.Context, st *storage.Store, newList func() runtime.Object) cache.ListerWatcher {
	prefix := st.NamespacePrefix("")
	return &cache.ListWatch{
		ListWithContextFunc: func(lctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			res, err := st.List(lctx, storage.ListOptions{Prefix: prefix})
			if err != nil {
				return nil, err
			}
			list := newList()
			if err := meta.SetList(list, res.Items); err != nil {
				return nil, err
			}
			la, err := meta.ListAccessor(list)
			if err != nil {
				return nil, err
			}
			la.SetResourceVersion(strconv.FormatInt(res.ResourceVersion, 10))
			return list, nil
		},
		WatchFuncWithContext: func(wctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			rv, _ := strconv.ParseInt(opts.ResourceVersion, 10, 64)
			wo := storage.WatchOptions{Prefix: prefix, ResourceVersion: rv, AllowBookmarks: opts.AllowWatchBookmarks}
			if opts.SendInitialEvents != nil && *opts.SendInitialEvents {
				wo.InitialEvents, wo.InitialEventsEndBookmark, wo.AllowBookmarks = true, true, true
			}
			return st.Watch(wctx, wo)
		},
	}
}

// startAuthorizer builds the RBAC authorizer on informers over the RBAC
// stores and starts them; they stop with ctx.
func startAuthorizer(ctx context.Context, stores map[schema.GroupVersionResource]*storage.Store) (*rbac.Authorizer, error) {
	inform := func(resource string, obj runtime.Object, newList func() runtime.Object) (cache.SharedIndexInformer, error) {
		st := stores[rbacv1.SchemeGroupVersion.WithResource(resource)]
		if st == nil {
			return nil, fmt.Errorf("no storage for %s", resource)
		}
		inf := cache.NewSharedIndexInformer(storeListWatch(ctx, st, newList), obj, 0,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		go inf.Run(ctx.Done())
		return inf, nil
	}
	roles, err := inform("roles", &rbacv1.Role{}, func() runtime.Object { return &rbacv1.RoleList{} })
	if err != nil {
		return nil, err
	}
	roleBindings, err := inform("rolebindings", &rbacv1.RoleBinding{}, func() runtime.Object { return &rbacv1.RoleBindingList{} })
	if err != nil {
		return nil, err
	}
	clusterRoles, err := inform("clusterroles", &rbacv1.ClusterRole{}, func() runtime.Object { return &rbacv1.ClusterRoleList{} })
	if err != nil {
		return nil, err
	}
	clusterRoleBindings, err := inform("clusterrolebindings", &rbacv1.ClusterRoleBinding{}, func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} })
	if err != nil {
		return nil, err
	}
	return rbac.New(rbac.Listers{
		Roles:               rbaclisters.NewRoleLister(roles.GetIndexer()),
		RoleBindings:        rbaclisters.NewRoleBindingLister(roleBindings.GetIndexer()),
		ClusterRoles:        rbaclisters.NewClusterRoleLister(clusterRoles.GetIndexer()),
		ClusterRoleBindings: rbaclisters.NewClusterRoleBindingLister(clusterRoleBindings.GetIndexer()),
		Synced:              []cache.InformerSynced{roles.HasSynced, roleBindings.HasSynced, clusterRoles.HasSynced, clusterRoleBindings.HasSynced},
	}), nil
}

// startNodeAuthorizer builds the Node authorizer on informers over this
// server's pod and PVC stores (pods indexed by node) and starts them; they
// stop with ctx. The informers hold the watch cache's own objects.
func startNodeAuthorizer(ctx context.Context, stores map[schema.GroupVersionResource]*storage.Store) (*nodeauth.Authorizer, error) {
	podStore := stores[corev1.SchemeGroupVersion.WithResource("pods")]
	pvcStore := stores[corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")]
	if podStore == nil || pvcStore == nil {
		return nil, fmt.Errorf("no storage for pods or persistentvolumeclaims")
	}
	pods := cache.NewSharedIndexInformer(storeListWatch(ctx, podStore, func() runtime.Object { return &corev1.PodList{} }), &corev1.Pod{}, 0,
		cache.Indexers{nodeauth.PodsByNodeIndex: nodeauth.PodsByNode})
	pvcs := cache.NewSharedIndexInformer(storeListWatch(ctx, pvcStore, func() runtime.Object { return &corev1.PersistentVolumeClaimList{} }),
		&corev1.PersistentVolumeClaim{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	go pods.Run(ctx.Done())
	go pvcs.Run(ctx.Done())
	a := nodeauth.New(pods.GetIndexer(), corelisters.NewPersistentVolumeClaimLister(pvcs.GetIndexer()), pods.HasSynced, pvcs.HasSynced)
	if ingStore := stores[networkingv1.SchemeGroupVersion.WithResource("ingresses")]; ingStore != nil {
		ings := cache.NewSharedIndexInformer(storeListWatch(ctx, ingStore, func() runtime.Object { return &networkingv1.IngressList{} }),
			&networkingv1.Ingress{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		go ings.Run(ctx.Done())
		a.WithIngresses(ings.GetIndexer(), ings.HasSynced)
	}
	return a, nil
}
