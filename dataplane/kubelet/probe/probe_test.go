package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestHTTPGetJudgesStatusAndSendsHeaders(t *testing.T) {
	var agent, custom string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agent, custom = r.UserAgent(), r.Header.Get("X-Check")
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	c := &corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(n)}}}
	get := &corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("http"), HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Check", Value: "yes"}}}
	if err := HTTPGet(context.Background(), get, c, host); err != nil {
		t.Fatalf("a 200 failed: %v", err)
	}
	if !strings.HasPrefix(agent, "kube-probe/") || custom != "yes" {
		t.Fatalf("User-Agent %q, X-Check %q", agent, custom)
	}
	get.Path = "/bad"
	if err := HTTPGet(context.Background(), get, c, host); err == nil || !strings.Contains(err.Error(), "statuscode: 500") {
		t.Fatalf("a 500 gave %v", err)
	}
	get.Port = intstr.FromString("nope")
	if err := HTTPGet(context.Background(), get, c, host); err == nil || !strings.Contains(err.Error(), `no port named "nope"`) {
		t.Fatalf("an unknown port name gave %v", err)
	}
}

func TestTCPFailsOnAClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	c := &corev1.Container{Name: "c"}
	if err := TCP(context.Background(), &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}, c, "127.0.0.1"); err != nil {
		t.Fatalf("an open port failed: %v", err)
	}
	ln.Close()
	if err := TCP(context.Background(), &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}, c, "127.0.0.1"); err == nil {
		t.Fatal("a closed port passed")
	}
}
