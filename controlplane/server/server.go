// Package server wires `petrel server`: flags → etcd → storage → API server →
// bootstrap objects → controllers, and serves HTTPS until the context ends.
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/petrel-project/petrel/controlplane/admission/builtin"
	"github.com/petrel-project/petrel/controlplane/admission/podsecurity"
	"github.com/petrel-project/petrel/controlplane/allocator"
	"github.com/petrel-project/petrel/controlplane/apiserver"
	"github.com/petrel-project/petrel/controlplane/apiserver/filters"
	"github.com/petrel-project/petrel/controlplane/apiserver/liststream"
	"github.com/petrel-project/petrel/controlplane/audit"
	"github.com/petrel-project/petrel/controlplane/connlimit"
	"github.com/petrel-project/petrel/controlplane/controllers/bootstraptoken"
	"github.com/petrel-project/petrel/controlplane/controllers/clusterroleaggregation"
	"github.com/petrel-project/petrel/controlplane/controllers/cronjob"
	"github.com/petrel-project/petrel/controlplane/controllers/csrapproving"
	"github.com/petrel-project/petrel/controlplane/controllers/csrsigning"
	"github.com/petrel-project/petrel/controlplane/controllers/daemonset"
	"github.com/petrel-project/petrel/controlplane/controllers/deployment"
	"github.com/petrel-project/petrel/controlplane/controllers/disruption"
	"github.com/petrel-project/petrel/controlplane/controllers/endpointslice"
	"github.com/petrel-project/petrel/controlplane/controllers/endpointslicemirroring"
	"github.com/petrel-project/petrel/controlplane/controllers/garbagecollector"
	"github.com/petrel-project/petrel/controlplane/controllers/ingressstatus"
	"github.com/petrel-project/petrel/controlplane/controllers/job"
	"github.com/petrel-project/petrel/controlplane/controllers/loadbalancer"
	"github.com/petrel-project/petrel/controlplane/controllers/namespace"
	"github.com/petrel-project/petrel/controlplane/controllers/nodeipam"
	"github.com/petrel-project/petrel/controlplane/controllers/nodelifecycle"
	"github.com/petrel-project/petrel/controlplane/controllers/persistentvolume"
	"github.com/petrel-project/petrel/controlplane/controllers/podgc"
	"github.com/petrel-project/petrel/controlplane/controllers/replicaset"
	"github.com/petrel-project/petrel/controlplane/controllers/replication"
	"github.com/petrel-project/petrel/controlplane/controllers/resourcequota"
	"github.com/petrel-project/petrel/controlplane/controllers/rootca"
	"github.com/petrel-project/petrel/controlplane/controllers/serviceaccount"
	"github.com/petrel-project/petrel/controlplane/controllers/statefulset"
	"github.com/petrel-project/petrel/controlplane/encryption"
	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/controlplane/leader"
	"github.com/petrel-project/petrel/controlplane/nodeauth"
	"github.com/petrel-project/petrel/controlplane/pki"
	"github.com/petrel-project/petrel/controlplane/rbac"
	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/customresource"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/scheduler"
	"github.com/petrel-project/petrel/controlplane/storage"
	"github.com/petrel-project/petrel/controlplane/tokens"
	"github.com/petrel-project/petrel/controlplane/webui"
)

// Options are the flags of `petrel server`.
type Options struct {
	DataDir     string
	BindAddress string
	// AdvertiseAddress is where nodes and pods reach this server (the
	// kubernetes Service's endpoint); empty: the bind address, or else the
	// default route's source address.
	AdvertiseAddress string
	SecurePort       int
	EtcdEndpoints    []string
	// EtcdClientURL and EtcdPeerURL move the embedded etcd off its default
	// ports (for several clusters on one machine).
	EtcdClientURL string
	EtcdPeerURL   string
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile authenticate the server to
	// the external etcd of EtcdEndpoints.
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	ServiceCIDR                           string
	ClusterCIDR                           string
	NodePortRange                         string
	// LBPool is where LoadBalancer Services get addresses ("CIDR" or
	// "FIRST-LAST", comma-separated); empty leaves them pending.
	LBPool string
	// IngressService, NAMESPACE/NAME, is a LoadBalancer Service the server
	// keeps in front of the nodes' ingress; its address (from LBPool) is
	// the Ingresses' status. Empty: the nodes' addresses are.
	IngressService string
	// NodeMonitorGracePeriod is how long a node may stay silent before it is
	// marked Unknown and tainted unreachable.
	NodeMonitorGracePeriod time.Duration
	// HPASyncPeriod is how often each HorizontalPodAutoscaler is looked at
	// (0: 15 s).
	HPASyncPeriod time.Duration
	// AuthorizationMode is RBAC (the default) or AlwaysAllow (every
	// authenticated client may do everything).
	AuthorizationMode string
	// MaxRequestsInflight and MaxMutatingRequestsInflight bound the reads and
	// the writes served at once (system:masters and long-running requests
	// aside) before more are answered 429; 0 takes Kubernetes' 400 and 200.
	MaxRequestsInflight, MaxMutatingRequestsInflight int
	// MaxConnections bounds the connections the API port holds; 0 derives it
	// from the open-file limit, keeping descriptors for etcd and the rest.
	MaxConnections int
	// Join is the URL of a server of the cluster this one joins (with
	// Token, a server token); empty starts a new cluster (--cluster-init).
	Join, Token string
	// ClusterResetRestorePath is an etcd snapshot the embedded member is
	// restored from before it starts: a new one-member cluster with the
	// snapshot's data (the old member's data is moved aside).
	ClusterResetRestorePath string
	// EtcdSnapshotSchedule takes scheduled snapshots: a cron spec ("0 */6 *
	// * *", "@hourly", "@every 30m") or a plain interval ("30m"); empty:
	// none.
	EtcdSnapshotSchedule string
	// EtcdSnapshotRetention is how many scheduled snapshots are kept (0:
	// all).
	EtcdSnapshotRetention int
	// EtcdSnapshotDir is where they go; empty: <data-dir>/db/snapshots.
	EtcdSnapshotDir string
	// TLSSANs are more names and addresses in the serving certificate (a
	// load balancer's, a DNS name of all servers).
	TLSSANs []string
	// EncryptionProviderConfig is a Kubernetes EncryptionConfiguration file
	// saying which resources are encrypted in etcd and how; empty: the one
	// made at first start (<data-dir>/pki/encryption-config.yaml, Secrets
	// under AES-GCM) unless SecretsEncryption is off.
	EncryptionProviderConfig string
	// SecretsEncryption turns the default encryption at rest on (the
	// default) or off; an explicit EncryptionProviderConfig applies either
	// way.
	SecretsEncryption bool
	// PodSecurityDefault is the Pod Security level (privileged, baseline,
	// restricted) enforced, audited and warned at in namespaces without
	// pod-security.kubernetes.io labels; kube-system is exempt.
	PodSecurityDefault string
	// PodSecurityConfigFile is a PodSecurityConfiguration file used instead
	// of PodSecurityDefault (defaults and exemptions as written there).
	PodSecurityConfigFile string
	// AuditLogPath is where audit events go as JSON lines: "" is
	// <data-dir>/logs/audit.log, "-" standard output, "none" no audit log.
	AuditLogPath string
	// AuditPolicyFile is an audit.k8s.io/v1 Policy; empty: audit.DefaultPolicy.
	AuditPolicyFile string
	// AuditLogMaxSize (MB), AuditLogMaxBackup (files) and AuditLogMaxAge
	// (days) rotate the audit log.
	AuditLogMaxSize, AuditLogMaxBackup, AuditLogMaxAge int
	// EnablePriorityAndFairness classifies requests by FlowSchemas into
	// priority levels sharing MaxRequestsInflight+MaxMutatingRequestsInflight
	// seats, instead of the two plain in-flight limits.
	EnablePriorityAndFairness bool
	// DefaultLocalStoragePath is the directory on each node under which
	// the default StorageClass (local) makes volumes; empty:
	// <data-dir>/storage.
	DefaultLocalStoragePath string
}

// DefaultOptions are the documented defaults.
func DefaultOptions() Options {
	return Options{
		DataDir: "/var/lib/petrel", BindAddress: "0.0.0.0", SecurePort: 6443,
		ServiceCIDR: "10.96.0.0/16", ClusterCIDR: "10.244.0.0/16", NodePortRange: "30000-32767", NodeMonitorGracePeriod: 40 * time.Second,
		AuthorizationMode: AuthorizationRBAC, EtcdSnapshotRetention: 5, SecretsEncryption: true,
		PodSecurityDefault: "baseline", AuditLogMaxSize: 100, AuditLogMaxBackup: 10, AuditLogMaxAge: 30,
		EnablePriorityAndFairness: true,
	}
}

// Version is what /version reports: the Kubernetes API level served.
var Version = version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.0-petrel", Platform: "linux/amd64", GoVersion: "go1.26"}

// LeaseTTL is how long a dead leader keeps the controllers' lease.
var LeaseTTL = 5 * time.Second

// Server is a running control plane.
type Server struct {
	opts Options
	// bootstrapped is set once the built-in objects exist (see /readyz).
	bootstrapped atomic.Bool
	Kubeconfig   string
	URL          string
	// Port is the API server's port.
	Port int
	// loopbackKubeconfig is the server's own clients' (the controllers'):
	// its URL.
	loopbackKubeconfig string
	// NodeToken is the join token kept in <data-dir>/node-token.
	NodeToken string
	// Identity names this server in leader elections.
	Identity   string
	backend    *etcd.Backend
	httpServer *http.Server
	listener   net.Listener
	lbPool     []loadbalancer.Range
	ca         *pki.CA
	caPEM      []byte
	// frontProxyCAPEM is the CA aggregated servers trust for request
	// headers (extension-apiserver-authentication).
	frontProxyCAPEM []byte
	audit           *audit.Logger
	done            chan error
}

// storageCodec stores objects as Kubernetes does: protobuf with a type header.
type storageCodec struct {
	gvk        schema.GroupVersionKind
	apiVersion string // gvk's, written once
	pb         *protobuf.Serializer
}

func newStorageCodec(gvk schema.GroupVersionKind, pb *protobuf.Serializer) storageCodec {
	return storageCodec{gvk: gvk, apiVersion: gvk.GroupVersion().String(), pb: pb}
}

// Encode marshals into a pooled allocator's buffer and copies the result
// out once (a bytes.Buffer cost a fresh buffer and its growth per write).
func (c storageCodec) Encode(obj runtime.Object) ([]byte, error) {
	obj.GetObjectKind().SetGroupVersionKind(c.gvk)
	alloc := encodeAllocators.Get().(*runtime.Allocator)
	defer encodeAllocators.Put(alloc)
	var out appendWriter
	if err := c.pb.EncodeWithAllocator(obj, &out, alloc); err != nil {
		return nil, err
	}
	return out, nil
}

// encodeAllocators hold buffers that storage encoding reuses.
var encodeAllocators = sync.Pool{New: func() any { return &runtime.Allocator{} }}

// appendWriter collects what is written to it.
type appendWriter []byte

func (w *appendWriter) Write(p []byte) (int, error) {
	*w = append(*w, p...)
	return len(p), nil
}

// Decode reads the stored envelope in place and unmarshals the object from
// it; the serializer's own path copies the payload out of the envelope first
// (a copy per watch event and per read). Anything unexpected goes the
// serializer's way, for its checks and messages.
func (c storageCodec) Decode(data []byte, into runtime.Object) (runtime.Object, error) {
	if raw, ok := c.payload(data); ok {
		if pb, ok := into.(interface {
			Reset()
			Unmarshal([]byte) error
		}); ok {
			pb.Reset()
			if err := pb.Unmarshal(raw); err == nil {
				into.GetObjectKind().SetGroupVersionKind(c.gvk)
				return into, nil
			}
		}
	}
	obj, _, err := c.pb.Decode(data, &c.gvk, into)
	if err != nil {
		return nil, err
	}
	obj.GetObjectKind().SetGroupVersionKind(c.gvk)
	return obj, nil
}

// storageMagic opens every protobuf value Kubernetes stores.
var storageMagic = []byte{0x6b, 0x38, 0x73, 0x00}

// payload returns the object bytes of a stored runtime.Unknown envelope
// (field 1 typeMeta, 2 raw, 3 contentEncoding, 4 contentType) when its type
// is the codec's and nothing is encoded on top.
func (c storageCodec) payload(data []byte) ([]byte, bool) {
	b, ok := bytes.CutPrefix(data, storageMagic)
	if !ok {
		return nil, false
	}
	var raw, apiVersion, kind []byte
	ok = bytesFields(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case 1: // runtime.TypeMeta: 1 apiVersion, 2 kind
			return bytesFields(v, func(num protowire.Number, v []byte) bool {
				switch num {
				case 1:
					apiVersion = v
				case 2:
					kind = v
				}
				return true
			})
		case 2:
			raw = v
			return true
		default: // a content encoding or type: not ours to read here
			return len(v) == 0
		}
	})
	if !ok || string(apiVersion) != c.apiVersion || string(kind) != c.gvk.Kind {
		return nil, false
	}
	return raw, true
}

// bytesFields calls fn with each field of a message whose fields are all
// length-delimited; false when the message is not such, or fn said so.
func bytesFields(b []byte, fn func(num protowire.Number, v []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 || !fn(num, v) {
			return false
		}
		b = b[n:]
	}
	return true
}

// mappedCodec stores a resource as another (events.k8s.io events as core
// events), so that both groups read and write the same objects.
type mappedCodec struct {
	stored storageCodec
	m      *registry.StorageMapping
}

func (c mappedCodec) Encode(obj runtime.Object) ([]byte, error) {
	return c.stored.Encode(c.m.ToStored(obj))
}

func (c mappedCodec) Decode(data []byte, _ runtime.Object) (runtime.Object, error) {
	obj, err := c.stored.Decode(data, c.m.NewStored())
	if err != nil {
		return nil, err
	}
	return c.m.FromStored(obj), nil
}

// keyPrefix is /registry/<resource>/ for the core group, else
// /registry/<group>/<resource>/.
func keyPrefix(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return "/registry/" + gvr.Resource + "/"
	}
	return "/registry/" + gvr.Group + "/" + gvr.Resource + "/"
}

func parsePortRange(s string) (int, int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return 0, 0, fmt.Errorf("invalid port range %q: want LOW-HIGH", s)
	}
	return a, b, nil
}

// Start brings the control plane up and returns once it serves.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir %s: %w", opts.DataDir, err)
	}
	_, serviceCIDR, err := net.ParseCIDR(opts.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("--service-cidr: %w", err)
	}
	if _, _, err := net.ParseCIDR(opts.ClusterCIDR); err != nil {
		return nil, fmt.Errorf("--cluster-cidr: %w", err)
	}
	portMin, portMax, err := parsePortRange(opts.NodePortRange)
	if err != nil {
		return nil, fmt.Errorf("--service-node-port-range: %w", err)
	}
	lbPool, err := loadbalancer.ParsePool(opts.LBPool)
	if err != nil {
		return nil, err
	}
	if opts.IngressService != "" {
		if _, _, err := ingressstatus.ParseService(opts.IngressService); err != nil {
			return nil, err
		}
		if len(lbPool) == 0 {
			slog.Warn("--ingress-service without --lb-pool: the Service waits for an address from another load balancer", "service", opts.IngressService)
		}
	}
	if a := opts.AdvertiseAddress; a != "" {
		if ip := net.ParseIP(a); ip == nil || ip.To4() == nil || ip.IsUnspecified() {
			return nil, fmt.Errorf("--advertise-address %q: give this server's IPv4 address that nodes reach", a)
		}
	}
	switch opts.AuthorizationMode {
	case AuthorizationRBAC, AuthorizationAlwaysAllow:
	case "":
		opts.AuthorizationMode = AuthorizationRBAC
	default:
		return nil, fmt.Errorf("--authorization-mode %q: want %s or %s", opts.AuthorizationMode, AuthorizationRBAC, AuthorizationAlwaysAllow)
	}
	snapshots, err := parseSnapshotSchedule(opts.EtcdSnapshotSchedule)
	if err != nil {
		return nil, err
	}
	memberName, initialCluster := "", ""
	if opts.ClusterResetRestorePath != "" && (opts.Join != "" || len(opts.EtcdEndpoints) > 0) {
		return nil, fmt.Errorf("--cluster-reset-restore-path restores this server's embedded etcd as a new one-member cluster: it goes with neither --join nor --etcd-endpoints")
	}
	if opts.Join != "" {
		if memberName, initialCluster, err = joinCluster(ctx, opts); err != nil {
			return nil, fmt.Errorf("joining %s: %w", opts.Join, err)
		}
	} else if memberName, err = etcdMemberName(opts); err != nil {
		return nil, err
	}
	if opts.ClusterResetRestorePath != "" {
		if err := restoreSnapshot(opts, memberName); err != nil {
			return nil, err
		}
	}
	slog.Info("starting etcd", "endpoints", opts.EtcdEndpoints, "embedded", len(opts.EtcdEndpoints) == 0, "member", memberName)
	backend, err := etcd.Start(ctx, etcd.Config{Endpoints: opts.EtcdEndpoints, DataDir: opts.DataDir, ClientURL: opts.EtcdClientURL, PeerURL: opts.EtcdPeerURL,
		CAFile: opts.EtcdCAFile, CertFile: opts.EtcdCertFile, KeyFile: opts.EtcdKeyFile, Name: memberName, InitialCluster: initialCluster})
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, backend: backend, lbPool: lbPool, done: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			backend.Close()
		}
	}()
	pkiDir := filepath.Join(opts.DataDir, "pki")
	if err := checkIdentity(ctx, backend.Client, opts.DataDir, backend.Endpoints, func() ([]byte, error) {
		ca, err := pki.LoadOrCreateCA(pkiDir)
		if err != nil {
			return nil, fmt.Errorf("certificate authority: %w", err)
		}
		return ca.CertPEM, nil
	}); err != nil {
		return nil, err
	}
	alloc, err := allocator.New(backend.Client, serviceCIDR, portMin, portMax)
	if err != nil {
		return nil, err
	}
	resources := registry.All(registry.Config{ServiceCIDR: serviceCIDR, NodePortMin: portMin, NodePortMax: portMax, ServiceHooks: alloc})
	// The CA comes first: its key seals the cluster's copy of the
	// encryption configuration.
	ca, err := pki.LoadOrCreateCA(filepath.Join(opts.DataDir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	s.ca, s.caPEM = ca, ca.CertPEM
	encrypt, err := loadEncryption(ctx, opts, backend.Client)
	if err != nil {
		return nil, err
	}
	pb := protobuf.NewSerializer(apiserver.Scheme, apiserver.Scheme)
	stores := map[schema.GroupVersionResource]*storage.Store{}
	for _, res := range resources {
		res := res
		prefix, codec, stored := keyPrefix(res.GVR), storage.Codec(newStorageCodec(res.GVK(), pb)), res.GVR.GroupResource()
		if m := res.Storage; m != nil {
			prefix, stored = keyPrefix(m.GVR), m.GVR.GroupResource()
			codec = mappedCodec{stored: newStorageCodec(m.GVR.GroupVersion().WithKind(m.Kind), pb), m: m}
		}
		st, err := storage.New(ctx, backend.Client, storage.Config{
			Prefix: prefix, Resource: res.GVR.GroupResource(), Codec: codec,
			Transformer: encrypt.For(stored),
			NewFunc:     res.New,
			JSONEncode: func(obj runtime.Object) ([]byte, error) {
				return json.Marshal(obj)
			},
			ProtoEncode: liststream.ProtoMessage,
			AttrFunc: func(obj runtime.Object) (labels.Set, fields.Fields, error) {
				acc, err := meta.Accessor(obj)
				if err != nil {
					return nil, nil, err
				}
				return labels.Set(acc.GetLabels()), res.ObjectFields(obj), nil
			},
		})
		if err != nil {
			return nil, err
		}
		stores[res.GVR] = st
	}
	if err := repairAllocations(ctx, stores[corev1.SchemeGroupVersion.WithResource("services")], alloc); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	nodeTransport, err := nodeClientTransport(ca, filepath.Join(opts.DataDir, "pki"))
	if err != nil {
		return nil, err
	}
	tokens, err := tokens.LoadOrCreate(filepath.Join(opts.DataDir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("service account signing key: %w", err)
	}
	var authz *rbac.Authorizer
	var nodeAuthz *nodeauth.Authorizer
	if opts.AuthorizationMode == AuthorizationRBAC {
		if authz, err = startAuthorizer(ctx, stores); err != nil {
			return nil, fmt.Errorf("authorization: %w", err)
		}
		if nodeAuthz, err = startNodeAuthorizer(ctx, stores); err != nil {
			return nil, fmt.Errorf("node authorization: %w", err)
		}
	}
	// The generic store serves every resource; the admission chain runs
	// on every write (its plugins read other objects through the registry).
	apiRegistry := generic.NewRegistry()
	for _, res := range resources {
		apiRegistry.Add(res, stores[res.GVR])
	}
	psCfg, err := podsecurity.Config(podsecurity.Options{ConfigFile: opts.PodSecurityConfigFile, DefaultLevel: opts.PodSecurityDefault})
	if err != nil {
		return nil, err
	}
	podSecurity, err := podsecurity.New(psCfg, apiRegistry, reg)
	if err != nil {
		return nil, err
	}
	apiRegistry.SetAdmission(builtin.Chain(builtin.Config{Registry: apiRegistry, Authorizer: authz, NodeAuthorizer: nodeAuthz, PodSecurity: podSecurity}))
	auditLog, err := openAuditLog(opts, reg)
	if err != nil {
		return nil, err
	}
	s.audit = auditLog
	// Every server serves the kinds CustomResourceDefinitions define.
	crdController, err := customresource.NewController(apiRegistry, backend.Client, encrypt.For)
	if err != nil {
		return nil, err
	}
	fpCA, err := frontProxyCA(opts.DataDir)
	if err != nil {
		return nil, err
	}
	s.frontProxyCAPEM = fpCA.CertPEM
	agg, err := newAggregator(fpCA, opts.DataDir)
	if err != nil {
		return nil, err
	}
	api, err := apiserver.New(apiserver.Config{
		Aggregator: agg,
		Resources:  resources, Registry: apiRegistry, Version: Version, Metrics: reg, NodeTransport: nodeTransport, Tokens: tokens, Authorizer: authz, NodeAuthorizer: nodeAuthz,
		MaxReadOnlyInflight: opts.MaxRequestsInflight, MaxMutatingInflight: opts.MaxMutatingRequestsInflight, Audit: auditLog,
		UI: webui.Handler(webui.Config{User: func(r *http.Request) string {
			u, _ := apiserver.UserFrom(r.Context())
			return u.Name
		}}),
		Ready: func() error {
			// As Kubernetes' post-start hooks: not ready before the default
			// namespaces, Services and RBAC policy exist and the policy is
			// loaded, or early clients would be refused what they may do.
			if !s.bootstrapped.Load() {
				return errors.New("creating the built-in objects")
			}
			if authz != nil && !authz.HasSynced() {
				return errors.New("loading the authorization policy")
			}
			if nodeAuthz != nil && !nodeAuthz.HasSynced() {
				return errors.New("loading the node authorizer's pods")
			}
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := backend.Client.Get(cctx, "/registry/\x00health")
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	hosts := []string{"localhost", "127.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", serviceIP(serviceCIDR, 1)}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	if opts.BindAddress != "0.0.0.0" && opts.BindAddress != "" && opts.BindAddress != "::" {
		hosts = append(hosts, opts.BindAddress)
	}
	if opts.AdvertiseAddress != "" {
		hosts = append(hosts, opts.AdvertiseAddress)
	}
	hosts = append(hosts, localAddresses()...)
	for _, san := range opts.TLSSANs {
		if san = strings.TrimSpace(san); san != "" && !slices.Contains(hosts, san) {
			hosts = append(hosts, san)
		}
	}
	certPath, keyPath, err := ca.EnsurePair(filepath.Join(opts.DataDir, "pki"), "apiserver", "petrel-apiserver", nil, hosts, false)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	tlsCert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	addr := net.JoinHostPort(opts.BindAddress, strconv.Itoa(opts.SecurePort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (is another API server running? pick --secure-port): %w", addr, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	maxConns := opts.MaxConnections
	if maxConns <= 0 {
		// The API port gets most of what the process may open: a flood that
		// took every descriptor once stopped etcd with "too many open files".
		fileLimit, err := connlimit.RaiseFileLimit()
		if err != nil {
			slog.Warn("open-file limit", "err", err)
		}
		maxConns = connlimit.Budget(fileLimit, 0.75)
	}
	limited := connlimit.New(ln, maxConns, "apiserver", reg)
	ln = limited
	s.listener = ln
	slog.Info("API connections", "max", maxConns)
	// The admin kubeconfig names this server's own address (so that it
	// works from another machine); the server's own clients (bootstrap,
	// controllers) use the loopback one.
	s.Port = port
	s.URL = "https://" + net.JoinHostPort(ownAddress(opts.BindAddress, ""), strconv.Itoa(port))
	s.Kubeconfig = filepath.Join(opts.DataDir, "admin.kubeconfig")
	s.loopbackKubeconfig = filepath.Join(opts.DataDir, "pki", "loopback.kubeconfig")
	adminURL := "https://" + net.JoinHostPort(ownAddress(opts.BindAddress, opts.AdvertiseAddress), strconv.Itoa(port))
	if err := ca.WriteKubeconfig(s.Kubeconfig, adminURL, "petrel-admin", []string{"system:masters"}); err != nil {
		return nil, fmt.Errorf("writing %s: %w", s.Kubeconfig, err)
	}
	if err := ca.WriteKubeconfig(s.loopbackKubeconfig, s.URL, "petrel-loopback", []string{"system:masters"}); err != nil {
		return nil, fmt.Errorf("writing %s: %w", s.loopbackKubeconfig, err)
	}
	if opts.EnablePriorityAndFairness {
		if err := startFairness(ctx, api, s.loopbackKubeconfig, opts, reg); err != nil {
			return nil, err
		}
	}
	// Webhooks and policies join the chain now that the server's own
	// client can be made; nothing has been written through it yet.
	dynamic, resolver, err := dynamicAdmission(ctx, s.loopbackKubeconfig, apiRegistry, authz)
	if err != nil {
		return nil, err
	}
	apiRegistry.SetAdmission(builtin.Chain(builtin.Config{Registry: apiRegistry, Authorizer: authz, NodeAuthorizer: nodeAuthz, Dynamic: dynamic, PodSecurity: podSecurity}))
	// Conversion webhooks reach Services as admission webhooks do.
	if err := crdController.SetServiceResolver(resolver); err != nil {
		return nil, err
	}
	go crdController.Run(ctx)
	s.httpServer = &http.Server{
		Handler: authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == serverJoinPath {
				s.serveJoin(w, r)
				return
			}
			api.ServeHTTP(w, r)
		}), api.AuthenticateToken),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{tlsCert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool,
			MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
		},
		// The TLS handshake shares this deadline (net/http takes the least of
		// its timeouts): a connection that says nothing goes within 10 s.
		ReadHeaderTimeout: 10 * time.Second,
		// Longer than client-go's 90 s idle keep-alive, so the client closes
		// first; the listener may still close idle ones for room.
		IdleTimeout: 2 * time.Minute,
		ConnState:   limited.ConnState,
		ErrorLog:    log.New(httpErrorLog{}, "", 0),
	}
	go func() {
		err := s.httpServer.ServeTLS(ln, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	if err := s.bootstrap(ctx, serviceCIDR); err != nil {
		ok = true // Stop closes the backend
		s.Stop()
		return nil, fmt.Errorf("creating the built-in objects: %w", err)
	}
	s.bootstrapped.Store(true)
	isLeader := &atomic.Bool{}
	if err := s.startAggregator(ctx, agg, resources, isLeader.Load); err != nil {
		ok = true // Stop closes the backend
		s.Stop()
		return nil, fmt.Errorf("API aggregation: %w", err)
	}
	// Controllers run in one server at a time: the leader on an etcd lease.
	leading := prometheus.NewGauge(prometheus.GaugeOpts{Name: "petrel_leader", Help: "1 while this server leads the controllers.",
		ConstLabels: prometheus.Labels{"election": "controllers"}})
	reg.MustRegister(leading)
	host, _ := os.Hostname()
	s.Identity = fmt.Sprintf("%s:%d/%d", host, port, os.Getpid())
	go leader.Run(ctx, leader.Config{
		Client: backend.Client, Name: "controllers", Identity: s.Identity, TTL: LeaseTTL,
		OnLeading: func(lctx context.Context) { s.runControllers(lctx, resources) },
		OnChange: func(on bool) {
			isLeader.Store(on)
			if on {
				leading.Set(1)
			} else {
				leading.Set(0)
			}
		},
	})
	if snapshots != nil {
		dir := opts.EtcdSnapshotDir
		if dir == "" {
			dir = etcd.SnapshotDir(opts.DataDir)
		}
		name := memberName
		if name == "" {
			name = etcd.DefaultMemberName
		}
		go runSnapshots(ctx, backend, snapshots, dir, name, opts.EtcdSnapshotRetention)
	}
	ok = true
	// Start-up builds large transient structures (OpenAPI, type converters,
	// the first lists); give that memory back before settling to idle.
	go func() {
		time.Sleep(2 * time.Second)
		debug.FreeOSMemory()
	}()
	return s, nil
}

// runControllers runs the controllers until ctx ends (the lead is lost).
func (s *Server) runControllers(ctx context.Context, resources []*registry.Resource) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.loopbackKubeconfig)
	if err != nil {
		slog.Error("controllers: kubeconfig", "err", err)
		return
	}
	cfg.QPS, cfg.Burst = 500, 1000
	// Protobuf, as kube-controller-manager and kube-scheduler speak: JSON
	// encoding on the server and decoding in the informers was a tenth of
	// the CPU the scheduler benchmark left to the API.
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	var rs []garbagecollector.Resource
	for _, r := range resources {
		rs = append(rs, garbagecollector.Resource{GVR: r.GVR, Kind: r.Kind})
	}
	gc, err := garbagecollector.New(cfg, rs)
	if err != nil {
		slog.Error("controllers: garbage collector", "err", err)
		return
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		slog.Error("controllers: client", "err", err)
		return
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	slices := endpointslice.New(cs, factory)
	mirroring := endpointslicemirroring.New(cs, factory)
	sets := replicaset.New(cs, factory)
	rcs := replication.New(cs, factory)
	deployments := deployment.New(cs, factory)
	jobs := job.New(cs, factory)
	statefulSets := statefulset.New(cs, factory)
	daemonSets := daemonset.New(cs, factory)
	cronJobs := cronjob.New(cs, factory, clock.RealClock{})
	// The scheduler writes a binding and an event per pod: a client-side
	// rate limit would cap it (500 QPS capped it at about 500 pods/s).
	schedCfg := rest.CopyConfig(cfg)
	schedCfg.QPS, schedCfg.Burst = 5000, 5000
	schedClient, err := kubernetes.NewForConfig(schedCfg)
	if err != nil {
		slog.Error("controllers: scheduler client", "err", err)
		return
	}
	sched := scheduler.New(schedClient, factory)
	ipam, err := nodeipam.New(cs, factory, s.opts.ClusterCIDR, 24)
	if err != nil {
		slog.Error("controllers: node IPAM", "err", err)
		return
	}
	accounts := serviceaccount.New(cs, factory)
	rootCA := rootca.New(cs, factory, s.caPEM)
	policies := policyStatus(cs, factory)
	csrApprover := csrapproving.New(cs, factory)
	csrSigner := csrsigning.New(cs, factory, s.ca, 0)
	tokens := bootstraptoken.New(cs)
	aggregation := clusterroleaggregation.New(cs, factory)
	budgets := disruption.New(cs, factory)
	served := map[schema.GroupResource]schema.GroupVersionResource{}
	for _, r := range resources {
		served[r.GVR.GroupResource()] = r.GVR
	}
	metaClient, err := metadata.NewForConfig(cfg)
	if err != nil {
		slog.Error("controllers: metadata client", "err", err)
		return
	}
	quotas := resourcequota.New(cs, factory, metaClient, func(gr schema.GroupResource) (schema.GroupVersionResource, bool) {
		gvr, ok := served[gr]
		return gvr, ok
	})
	lifecycle := nodelifecycle.New(cs, factory, s.opts.NodeMonitorGracePeriod)
	podGC := podgc.New(cs, factory, 12500)
	if len(s.lbPool) > 0 {
		go loadbalancer.New(cs, factory, s.lbPool).Run(ctx)
	}
	ingresses, err := ingressstatus.New(cs, factory, s.opts.IngressService)
	if err != nil {
		slog.Error("controllers: ingress status", "err", err)
		return
	}
	storageDir := s.opts.DefaultLocalStoragePath
	if storageDir == "" {
		storageDir = filepath.Join(s.opts.DataDir, "storage")
	}
	volumes := persistentvolume.New(cs, factory, storageDir)
	autoscaler, err := newAutoscaler(ctx, cfg, cs, factory, s.opts.HPASyncPeriod)
	if err != nil {
		slog.Error("controllers: horizontal pod autoscaler", "err", err)
		return
	}
	factory.Start(ctx.Done())
	go volumes.Run(ctx)
	go autoscaler.Run(ctx)
	go accounts.Run(ctx)
	go rootCA.Run(ctx)
	go policies.Run(ctx)
	go csrApprover.Run(ctx)
	go csrSigner.Run(ctx)
	go tokens.Run(ctx)
	go aggregation.Run(ctx)
	go budgets.Run(ctx)
	go quotas.Run(ctx)
	go lifecycle.Run(ctx)
	go podGC.Run(ctx)
	go ingresses.Run(ctx)
	go slices.Run(ctx, 4)
	go mirroring.Run(ctx)
	go sets.Run(ctx, 4)
	go rcs.Run(ctx, 2)
	go deployments.Run(ctx, 4)
	go jobs.Run(ctx, 4)
	go statefulSets.Run(ctx, 4)
	go daemonSets.Run(ctx, 2)
	go cronJobs.Run(ctx)
	go sched.Run(ctx)
	go ipam.Run(ctx)
	go namespace.Run(ctx, s.loopbackKubeconfig, resources)
	gc.Run(ctx, 4)
}

// Wait blocks until the server stops.
func (s *Server) Wait() error { return <-s.done }

// Stop shuts the server down and closes etcd.
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.httpServer != nil {
		_ = s.httpServer.Shutdown(ctx)
	}
	if s.audit != nil {
		s.audit.Close()
	}
	s.backend.Close()
}

// startFairness runs API Priority and Fairness over the server's own
// flowcontrol objects (read through the loopback client, whose
// system:masters requests the exempt FlowSchema lets through).
func startFairness(ctx context.Context, api *apiserver.Server, kubeconfig string, opts Options, reg prometheus.Registerer) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("priority and fairness: %w", err)
	}
	readOnly, mutating := opts.MaxRequestsInflight, opts.MaxMutatingRequestsInflight
	if readOnly <= 0 {
		readOnly = filters.DefaultMaxReadOnlyInflight
	}
	if mutating <= 0 {
		mutating = filters.DefaultMaxMutatingInflight
	}
	f, err := filters.NewFairness(cfg, readOnly+mutating, reg)
	if err != nil {
		return err
	}
	go f.Run(ctx)
	api.SetFairness(f)
	return nil
}

// openAuditLog opens the audit log opts ask for; nil for none.
func openAuditLog(opts Options, reg prometheus.Registerer) (*audit.Logger, error) {
	path := opts.AuditLogPath
	switch path {
	case "none":
		return nil, nil
	case "":
		path = filepath.Join(opts.DataDir, "logs", "audit.log")
	}
	return audit.New(audit.Options{PolicyFile: opts.AuditPolicyFile, LogPath: path,
		MaxSizeMB: opts.AuditLogMaxSize, MaxBackups: opts.AuditLogMaxBackup, MaxAgeDays: opts.AuditLogMaxAge}, reg)
}

// serviceIP is the k-th address of the service range: 1 for the kubernetes
// Service (10.96.0.1), 10 for kube-dns (10.96.0.10).
func serviceIP(n *net.IPNet, k byte) string {
	ip := make(net.IP, len(n.IP.To4()))
	copy(ip, n.IP.To4())
	ip[len(ip)-1] += k
	return ip.String()
}

// ownAddress is where this server is reached: its bind address when it
// binds one, else the advertise address when given (preferred may be
// empty), else 127.0.0.1.
func ownAddress(bind, preferred string) string {
	if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() {
		return ip.String()
	}
	if preferred != "" {
		return preferred
	}
	return "127.0.0.1"
}

func localAddresses() []string {
	var out []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// anonymousPaths may be read without a client certificate, as Kubernetes allows.
var anonymousPaths = map[string]bool{"/healthz": true, "/livez": true, "/readyz": true, "/version": true}

// clusterInfoPath is kube-public/cluster-info, which anyone may read.
const clusterInfoPath = "/api/v1/namespaces/kube-public/configmaps/cluster-info"

// nodeClientTransport reaches node servers with a client certificate from
// the cluster's CA. Like Kubernetes' API server without
// --kubelet-certificate-authority, it does not verify the nodes' serving
// certificates, which each node makes for itself.
func nodeClientTransport(ca *pki.CA, dir string) (http.RoundTripper, error) {
	certPath, keyPath, err := ca.EnsurePair(dir, "apiserver-node-client", "petrel-apiserver", []string{"system:masters"}, nil, true)
	if err != nil {
		return nil, fmt.Errorf("node client certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // see above
		Proxy:               nil,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}, nil
}

// httpErrorLog passes net/http's own error lines (handler panics, accept
// errors) to slog, but not failed TLS handshakes: a client that connects and
// leaves, or a flood of them, is not the server's fault and would fill the log.
type httpErrorLog struct{}

func (httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if !strings.Contains(msg, "TLS handshake error") {
		slog.Warn("API server connection", "msg", msg)
	}
	return len(p), nil
}

// authenticate lets in clients with a certificate from the cluster CA
// (admins, nodes, controllers: the user is the certificate's common name,
// its organizations the groups) and clients with a service account token
// of this cluster (pods) or a bootstrap token (joining nodes); anyone may read
// cluster-info; the rest get 401. The handlers find the user
// with the request.
func authenticate(next http.Handler, token func(context.Context, string) (apiserver.User, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			cert := r.TLS.VerifiedChains[0][0]
			u := apiserver.User{Name: cert.Subject.CommonName, Groups: append(append([]string{}, cert.Subject.Organization...), "system:authenticated")}
			next.ServeHTTP(w, r.WithContext(apiserver.WithUser(r.Context(), u)))
			return
		}
		if anonymousPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		hasBearer := strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !hasBearer && (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path == clusterInfoPath {
			// A joining node reads the CA here before it trusts anything
			// (see ensureClusterInfo): the one request served without
			// credentials, as system:anonymous, still through RBAC.
			u := apiserver.User{Name: anonymousUser, Groups: []string{"system:unauthenticated"}}
			next.ServeHTTP(w, r.WithContext(apiserver.WithUser(r.Context(), u)))
			return
		}
		msg := "Unauthorized: present a client certificate signed by the cluster CA (see <data-dir>/admin.kubeconfig), a service account token or a bootstrap token"
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && bearer != "" {
			u, err := token(r.Context(), strings.TrimSpace(bearer))
			if err == nil {
				next.ServeHTTP(w, r.WithContext(apiserver.WithUser(r.Context(), u)))
				return
			}
			msg = "Unauthorized: " + err.Error()
		}
		b, _ := json.Marshal(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
			Message: msg, Reason: metav1.StatusReasonUnauthorized, Code: http.StatusUnauthorized})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(append(b, '\n'))
	})
}

func repairAllocations(ctx context.Context, services *storage.Store, alloc *allocator.ServiceAllocator) error {
	res, err := services.List(ctx, storage.ListOptions{Prefix: services.NamespacePrefix("")})
	if err != nil {
		return err
	}
	var svcs []*corev1.Service
	for _, o := range res.Items {
		svcs = append(svcs, o.(*corev1.Service))
	}
	return alloc.Repair(ctx, svcs, func(ctx context.Context, namespace, name string) (*corev1.Service, error) {
		obj, err := services.Get(ctx, services.Key(namespace, name), name)
		if err != nil {
			return nil, err
		}
		return obj.(*corev1.Service), nil
	})
}

// bootstrap creates the namespaces and the kubernetes Service every cluster has,
// through the API like any client.
func (s *Server) bootstrap(ctx context.Context, serviceCIDR *net.IPNet) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.loopbackKubeconfig)
	if err != nil {
		return err
	}
	// The default RBAC policy is written concurrently: client-go's default
	// 5 requests/s would queue it for seconds.
	cfg.QPS, cfg.Burst = 100, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		for {
			_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{FieldManager: "petrel-bootstrap"})
			if err == nil || apierrors.IsAlreadyExists(err) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("namespace %s: %w", name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{ClusterIP: serviceIP(serviceCIDR, 1), Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP,
			TargetPort: intstr.FromInt32(int32(s.listener.Addr().(*net.TCPAddr).Port))}}},
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubernetes service: %w", err)
	}
	// kube-dns where Kubernetes puts it; each node's proxy sends it to the
	// node-local DNS, so it has no selector.
	dnsSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system",
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "PetrelDNS", "kubernetes.io/cluster-service": "true"}},
		Spec: corev1.ServiceSpec{ClusterIP: serviceIP(serviceCIDR, 10), Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
		}},
	}
	if _, err := cs.CoreV1().Services("kube-system").Create(ctx, dnsSvc, metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube-dns service: %w", err)
	}
	if err := rbac.EnsureDefaults(ctx, cs); err != nil {
		return err
	}
	if err := ensureDefaultObjects(ctx, cs); err != nil {
		return err
	}
	// Every node serves Ingresses of this class (dataplane/ingress); an
	// operator who edits or replaces it keeps their version.
	if _, err := cs.NetworkingV1().IngressClasses().Create(ctx, ingressstatus.Class(), metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("IngressClass %s: %w", ingressstatus.ClassName, err)
	}
	// Claims that name no class get this one (DefaultStorageClass
	// admission) and a directory on their pod's node; kept as edited.
	if _, err := cs.StorageV1().StorageClasses().Create(ctx, persistentvolume.Class(), metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("StorageClass %s: %w", persistentvolume.ClassName, err)
	}
	advertise := s.opts.AdvertiseAddress
	if advertise == "" {
		advertise = advertiseAddress(s.opts.BindAddress)
	}
	port := s.listener.Addr().(*net.TCPAddr).Port
	if err := ensureClusterInfo(ctx, cs, "https://"+net.JoinHostPort(advertise, strconv.Itoa(port)), s.caPEM); err != nil {
		return err
	}
	tok, err := ensureNodeToken(ctx, cs, s.opts.DataDir, s.caPEM)
	if err != nil {
		return err
	}
	s.NodeToken = tok.String()
	if err := ensureExtensionAuth(ctx, cs, s.caPEM, s.frontProxyCAPEM); err != nil {
		return err
	}
	if _, err := ensureServerToken(ctx, cs, s.opts.DataDir, s.caPEM); err != nil {
		return err
	}
	if err := publishEndpoints(ctx, cs, advertise, int32(port)); err != nil {
		return err
	}
	go keepEndpointLease(ctx, s.backend.Client, cs, advertise, port)
	return nil
}

// loadEncryption reads the encryption at rest configuration: the operator's
// file, or the one this server (or the cluster's first server, through the
// join) made at first start.
//
// The default file is the cluster's: a copy sealed with the CA key lives in
// etcd, and a server takes it at start when it differs, so that a key
// `petrelctl secrets-encrypt` prepared or rotated on one server reaches
// every server at its restart. A file given with --encryption-provider-config
// is the operator's to distribute.
func loadEncryption(ctx context.Context, opts Options, cli *clientv3.Client) (encryption.Transformers, error) {
	path := opts.EncryptionProviderConfig
	if path == "" {
		if !opts.SecretsEncryption {
			slog.Warn("server: Secrets are stored unencrypted in etcd (--secrets-encryption=false)")
			return nil, nil
		}
		path = filepath.Join(opts.DataDir, encryption.DefaultFile)
		if err := encryption.EnsureDefault(path); err != nil {
			return nil, fmt.Errorf("encryption at rest: %w", err)
		}
		changed, err := encryption.Sync(ctx, cli, path, filepath.Join(opts.DataDir, "pki", "ca.key"))
		if err != nil {
			return nil, fmt.Errorf("encryption at rest: %w", err)
		}
		if changed {
			slog.Info("server: took the cluster's encryption configuration from etcd (a key was prepared or rotated on another server)", "file", path)
		}
	}
	return encryption.Load(ctx, path)
}
