package api

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// minimalAPIServer is the least any API server on etcd does for a
// ConfigMap create: TLS and HTTP/2, decode the JSON body, one etcd put of
// the object in protobuf, and the object back in JSON. It has no
// validation, defaulting, admission, managed fields, watch cache or
// conflict check. Creates through it, from the same client-go clients, are
// a ceiling for what Petrel's creates can reach on the machine, measured
// in the same run.
type minimalAPIServer struct {
	srv *httptest.Server
}

func startMinimalAPIServer(ctx context.Context, etcd *clientv3.Client) *minimalAPIServer {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err) // only a broken k8s.io/api fails here
	}
	codecs := serializer.NewCodecFactory(scheme)
	jsonInfo, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	protoInfo, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	decoder := codecs.UniversalDeserializer()
	var rv atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cm := &corev1.ConfigMap{}
		if _, _, err := decoder.Decode(body, nil, cm); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cm.Namespace = "default"
		cm.UID = types.UID(strconv.FormatInt(rv.Add(1), 10))
		cm.CreationTimestamp = metav1.Now()
		cm.APIVersion, cm.Kind = "v1", "ConfigMap"
		stored, err := runtime.Encode(protoInfo.Serializer, cm)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := etcd.Put(r.Context(), "/bench/minimal/configmaps/default/"+cm.Name, string(stored))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		cm.ResourceVersion = strconv.FormatInt(resp.Header.Revision, 10)
		w.Header().Set("Content-Type", runtime.ContentTypeJSON)
		w.WriteHeader(http.StatusCreated)
		if err := jsonInfo.Serializer.Encode(cm, w); err != nil {
			return // the client sees a short body
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	return &minimalAPIServer{srv: srv}
}

// client is a client-go clientset for the minimal server, set up as the
// benchmark's Petrel clients are (no client-side rate limit).
func (m *minimalAPIServer) client() (kubernetes.Interface, error) {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.srv.Certificate().Raw})
	cfg := &rest.Config{Host: m.srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, QPS: 1e6, Burst: 1e6}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for the minimal API server: %w", err)
	}
	return cs, nil
}

func (m *minimalAPIServer) close() { m.srv.Close() }
